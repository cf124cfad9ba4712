"""Offline data: the :class:`Dataset` container, readers/writers for common formats, and the
registry that resolves dataset names (filled by :mod:`offrl.suite`)."""

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
from offrl.data.registry import data_dir, register_dataset_resolver

__all__ = [
    "Dataset",
    "DatasetError",
    "EpisodeStats",
    "data_dir",
    "load_d4rl_hdf5",
    "load_dataset",
    "load_minari",
    "load_npz",
    "register_dataset_resolver",
    "save_d4rl_hdf5",
    "save_dataset",
    "save_minari",
    "save_npz",
]
