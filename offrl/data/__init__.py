"""Offline data: the :class:`Dataset` container, readers/writers for common formats (d3rlpy's
dataset files, Tianshou's replay buffers, RL Unplugged's Atari shards and CSV / Parquet logs
included), and the registry
that resolves dataset names (filled by :mod:`offrl.suite`)."""

from offrl.data.d3rlpy_files import load_d3rlpy
from offrl.data.dataset import Dataset, DatasetError, EpisodeStats
from offrl.data.loaders import (
    export_minari,
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
from offrl.data.rlu_files import load_rlu_atari
from offrl.data.tabular import TableColumns, load_table
from offrl.data.tianshou_files import load_tianshou

__all__ = [
    "Dataset",
    "DatasetError",
    "EpisodeStats",
    "TableColumns",
    "data_dir",
    "export_minari",
    "load_d3rlpy",
    "load_d4rl_hdf5",
    "load_dataset",
    "load_minari",
    "load_npz",
    "load_rlu_atari",
    "load_table",
    "load_tianshou",
    "register_dataset_resolver",
    "save_d4rl_hdf5",
    "save_dataset",
    "save_minari",
    "save_npz",
]
