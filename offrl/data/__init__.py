"""Offline data: the :class:`Dataset` container and readers/writers for common formats."""

from offrl.data.dataset import Dataset, DatasetError, EpisodeStats
from offrl.data.loaders import (
    load_d4rl_hdf5,
    load_dataset,
    load_minari,
    load_npz,
    save_d4rl_hdf5,
    save_dataset,
    save_minari,
    save_npz,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "EpisodeStats",
    "load_d4rl_hdf5",
    "load_dataset",
    "load_minari",
    "load_npz",
    "save_d4rl_hdf5",
    "save_dataset",
    "save_minari",
    "save_npz",
]
