"""Reading and writing offline datasets: D4RL HDF5, Minari directories and offrl's own ``.npz``.

Every loader returns a validated :class:`~offrl.data.dataset.Dataset` and records where the data
came from in ``metadata``. Every problem raises :class:`~offrl.data.dataset.DatasetError` whose
message starts with the offending field or key (and names the file); nothing is dropped silently:
steps removed by D4RL's timeout rule are counted in ``metadata["dropped_steps"]`` and file entries
that are not read are listed in ``metadata["ignored_keys"]``.

Formats
-------
``d4rl-hdf5``
    One HDF5 file with flat datasets ``observations``, ``actions``, ``rewards``, ``terminals``,
    optional ``timeouts`` and ``next_observations``. Groups such as ``infos/`` are ignored.
``minari``
    A directory ``<dir>/data/main_data.hdf5`` (Minari's HDF5 back end) with one group
    ``episode_<i>`` per episode holding ``T + 1`` observations and ``T`` actions, rewards,
    terminations and truncations. Read with plain ``h5py``: the ``minari`` package is not needed.
``npz``
    offrl's own lossless format: the six transition arrays plus a JSON header (env id and
    metadata) stored as bytes, so loading never unpickles anything.

Writers are atomic: data goes to a temporary file in the destination directory, which is then
renamed over the target, so an interrupted save never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.registry import resolve_dataset
from offrl.io import replace_when_done, reserve_temp

__all__ = [
    "load_d4rl_hdf5",
    "save_d4rl_hdf5",
    "load_minari",
    "save_minari",
    "load_npz",
    "save_npz",
    "load_dataset",
    "save_dataset",
    "export_minari",
    "minari_datasets_dir",
]

PathLike = str | os.PathLike[str]

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
_NPZ_HEADER = "offrl_header"
_NPZ_FORMAT_VERSION = 1
_OFFRL_META_ATTR = "offrl_metadata"
_ENV_ID_KEYS = ("env_id", "env", "env_name", "environment", "gym_id", "gym_env_id")
_EPISODE_RE = re.compile(r"episode_(\d+)")
_MINARI_FILE = "main_data.hdf5"
_MINARI_METADATA = "metadata.json"


F = TypeVar("F", bound=Callable[..., Any])


def _damage_reported(kind: str) -> Callable[[F], F]:
    """Decorator of a loader ``(path, ...)``: any failure other than a :class:`DatasetError`
    (a damaged, truncated or foreign file makes h5py, zipfile and numpy raise many kinds)
    becomes a :class:`DatasetError` naming the file, so nothing else escapes a loader."""

    def deco(load: F) -> F:
        @functools.wraps(load)
        def wrapper(path: PathLike, *args: Any, **kwargs: Any) -> Any:
            try:
                return load(path, *args, **kwargs)
            except DatasetError:
                raise
            except Exception as exc:
                first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
                raise DatasetError(
                    f"path: {path} is not a readable {kind} (damaged, truncated or of another "
                    f"layout; {type(exc).__name__}: {first[:160]})"
                ) from exc

        return wrapper  # type: ignore[return-value]

    return deco


# ====================================================================== D4RL HDF5
@_damage_reported("D4RL HDF5 file")
def load_d4rl_hdf5(path: PathLike, env_id: str | None = None) -> Dataset:
    """Load a D4RL-layout HDF5 file.

    Args:
        path: the ``.hdf5`` file. It must hold the datasets ``observations`` ``[N, ...]``,
            ``actions``, ``rewards``, ``terminals``; ``timeouts`` is optional (absent means no
            truncation flags) and so is ``next_observations``. ``rewards``, ``terminals`` and
            ``timeouts`` of shape ``[N, 1]`` are flattened.
        env_id: Gymnasium id of the environment; overrides any id found in the file (the
            ``env_id`` / ``env`` / ``env_name`` ... entries of the root attributes or of the
            ``metadata/`` group).

    Returns:
        The dataset. With ``next_observations`` in the file, rows are used as they are. Without
        them, the successor of a step is the next row and D4RL's rule applies (see
        :meth:`Dataset.from_arrays`): a step flagged as a timeout has no logged successor and is
        dropped (counted in ``metadata["dropped_steps"]``), the step before it becomes the
        truncated end of its episode.

        ``metadata`` holds ``source`` (the file), ``format`` (``"d4rl-hdf5"``), the simple
        scalar entries of the file's ``metadata/`` group and root attributes under
        ``file_metadata``, and ``ignored_keys``: the datasets that were not read (``infos/...``).

    Raises:
        DatasetError: the file cannot be read, a required key is missing (the message names the
            key and the file), or the arrays are malformed.
    """
    p = Path(path)
    with _open_hdf5(p) as f:
        for key in ("observations", "actions", "rewards", "terminals"):
            if key not in f:
                raise DatasetError(f"{key}: required dataset missing from D4RL file {p}")
        arrays: dict[str, np.ndarray] = {}
        for key in _FIELDS:
            if key not in f:
                continue
            node = f[key]
            if not isinstance(node, h5py.Dataset):
                raise DatasetError(
                    f"{key}: is an HDF5 group, not an array, in {p} "
                    "(dict observation/action spaces are not supported yet)"
                )
            arrays[key] = _flatten_column(key, node[()])
        file_meta, consumed = _read_simple_hdf5_metadata(f)
        ignored = _list_datasets(f, exclude=set(_FIELDS) | consumed)
        offrl_meta = _decode_offrl_metadata(f.get("metadata"), p)
    meta: dict[str, Any] = dict(offrl_meta) if offrl_meta is not None else {}
    if offrl_meta is None and file_meta:
        meta["file_metadata"] = file_meta
    if ignored:
        meta["ignored_keys"] = ignored
    else:
        meta.pop("ignored_keys", None)
    meta["source"] = str(p)
    meta["format"] = "d4rl-hdf5"
    if env_id is None:
        env_id = _find_env_id(file_meta)
    return _build(p, arrays, env_id, meta)


def save_d4rl_hdf5(dataset: Dataset, path: PathLike) -> Path:
    """Write ``dataset`` as a D4RL-layout HDF5 file (atomically) and return its path.

    The file holds ``observations``, ``actions``, ``rewards``, ``next_observations``,
    ``terminals`` and ``timeouts`` at the root, and a ``metadata/`` group whose attributes are the
    env id (``env_id``), every scalar metadata entry, and the whole JSON metadata
    (``offrl_metadata``) so :func:`load_d4rl_hdf5` restores it exactly. D4RL-reading tools
    (``d4rl.get_dataset`` style) read the flat arrays and ignore attributes.

    Note: tools that ignore ``next_observations`` and take the next row as successor (D4RL's
    ``qlearning_dataset``) also skip every row flagged as a timeout.

    Raises:
        DatasetError: ``metadata`` is not JSON-serialisable (the message names the key).
    """
    p = Path(path)
    meta = _jsonable_metadata(dataset.metadata)
    with _atomic_target(p) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in dataset.arrays().items():
            f.create_dataset(name, data=arr)
        group = f.create_group("metadata")
        if dataset.env_id is not None:
            group.attrs["env_id"] = dataset.env_id
        for key, value in meta.items():
            if key in ("env_id", _OFFRL_META_ATTR):
                continue
            if isinstance(value, (str, bool, int, float)):
                group.attrs[key] = value
        group.attrs[_OFFRL_META_ATTR] = json.dumps(meta)
    return p


# ====================================================================== Minari
@_damage_reported("Minari dataset")
def load_minari(path: PathLike, env_id: str | None = None) -> Dataset:
    """Load a Minari dataset stored with the HDF5 back end (no ``minari`` package needed).

    Args:
        path: the dataset directory (holding ``data/main_data.hdf5``), its ``data/`` directory,
            or the ``main_data.hdf5`` file itself. A ``metadata.json`` next to the HDF5 file and
            the file's root attributes are read when present (``dataset_id``, ``env_spec``...).
        env_id: Gymnasium id of the environment; overrides the id of the stored ``env_spec``.

    Returns:
        The dataset. Episodes ``episode_<i>`` are read in numeric order of ``i`` (``episode_10``
        after ``episode_9``). Each has ``T + 1`` observations and ``T`` actions, rewards,
        ``terminations`` (-> ``terminals``) and ``truncations`` (-> ``timeouts``);
        ``next_observations`` are ``observations[1:]``, so no step is lost. An episode whose last
        step carries neither flag (recording stopped mid-episode) gets ``timeouts = True`` there,
        since its successor is known; such episodes are counted in
        ``metadata["unflagged_episode_ends"]``. Episodes with no step are counted in
        ``metadata["empty_episodes"]``.

        ``metadata`` holds ``source``, ``format`` (``"minari"``), ``dataset_id`` when known,
        ``minari`` (the simple entries of Minari's metadata, ``env_spec`` included) and
        ``ignored_keys`` (root entries that are not episodes).

    Raises:
        DatasetError: no Minari data at ``path``, a non-HDF5 back end, dict observation or action
            spaces (not supported yet), a missing array, or inconsistent lengths (the message
            names ``episode_<i>/<field>``).
    """
    p = Path(path)
    hdf5_path = _minari_file(p)
    info: dict[str, Any] = {}
    offrl_meta: dict[str, Any] | None = None
    with _open_hdf5(hdf5_path) as f:
        for key, value in f.attrs.items():
            if key == _OFFRL_META_ATTR:
                offrl_meta = _parse_json_object(_to_python(value), key, hdf5_path)
                continue
            simple = _simple_value(value)
            if simple is not None:
                info[key] = simple
        json_path = hdf5_path.parent / _MINARI_METADATA
        if json_path.is_file():
            try:
                with open(json_path, encoding="utf-8") as fh:
                    raw = json.load(fh)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"metadata.json: cannot be read: {json_path} ({exc})") from exc
            if not isinstance(raw, dict):
                raise DatasetError(f"metadata.json: expected a JSON object in {json_path}")
            for key, value in raw.items():
                if key == _OFFRL_META_ATTR and isinstance(value, dict):
                    offrl_meta = value
                elif value is None or isinstance(value, (str, bool, int, float)):
                    info[key] = value
        data_format = info.get("data_format", "hdf5")
        if data_format != "hdf5":
            raise DatasetError(
                f"data_format: Minari back end {data_format!r} is not supported "
                f"(only 'hdf5'), in {hdf5_path.parent}"
            )
        episodes: list[tuple[int, str]] = []
        ignored: list[str] = []
        for key in f:
            match = _EPISODE_RE.fullmatch(key)
            if match is not None and isinstance(f[key], h5py.Group):
                episodes.append((int(match.group(1)), key))
            else:
                ignored.append(key)
        if not episodes:
            raise DatasetError(f"episodes: no episode_<i> groups in Minari file {hdf5_path}")
        episodes.sort()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in _FIELDS}
        unflagged = 0
        empty = 0
        for _, key in episodes:
            ep = _read_minari_episode(f[key], key, hdf5_path)
            if ep is None:
                empty += 1
                continue
            if not (ep["terminals"][-1] or ep["timeouts"][-1]):
                ep["timeouts"][-1] = True
                unflagged += 1
            for name in _FIELDS:
                parts[name].append(ep[name])
    if not parts["observations"]:
        raise DatasetError(f"episodes: every episode in {hdf5_path} is empty (0 steps)")
    arrays: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        pieces = parts[name]
        shapes = {a.shape[1:] for a in pieces}
        if len(shapes) > 1:
            raise DatasetError(
                f"{name}: episodes disagree on the row shape ({sorted(map(str, shapes))}) "
                f"in {hdf5_path}"
            )
        arrays[name] = np.concatenate(pieces)
    meta: dict[str, Any] = dict(offrl_meta) if offrl_meta is not None else {}
    for key in ("ignored_keys", "unflagged_episode_ends", "empty_episodes"):
        meta.pop(key, None)
    meta["source"] = str(p)
    meta["format"] = "minari"
    if info:
        meta["minari"] = info
    if isinstance(info.get("dataset_id"), str):
        meta["dataset_id"] = info["dataset_id"]
    if ignored:
        meta["ignored_keys"] = sorted(ignored)
    if unflagged:
        meta["unflagged_episode_ends"] = unflagged
    if empty:
        meta["empty_episodes"] = empty
    if env_id is None:
        env_id = _env_id_from_spec(info.get("env_spec"))
    if env_id is None:
        stored = info.get("offrl_env_id")
        env_id = stored if isinstance(stored, str) else None
    return _build(hdf5_path, arrays, env_id, meta)


def save_minari(dataset: Dataset, path: PathLike) -> Path:
    """Write ``dataset`` as a Minari HDF5 dataset directory and return the directory.

    Creates ``<path>/data/main_data.hdf5`` (one group ``episode_<i>`` per episode, with ``T + 1``
    observations and ``T`` actions, rewards, terminations, truncations; attributes ``id`` and
    ``total_steps``) and ``<path>/data/metadata.json``. Both carry Minari's dataset facts
    (``total_episodes``, ``total_steps``, ``data_format``, ``observation_space``,
    ``action_space``, and ``dataset_id`` / ``env_spec`` when known) and offrl's metadata, so
    :func:`load_minari` restores it. Each file is written atomically.

    A Minari episode stores ``T + 1`` observations, so within every episode
    ``next_observations[i]`` must equal ``observations[i + 1]``. The last step of the final
    episode, if it carries no flag, is written as a truncation.

    Raises:
        DatasetError: the dataset has a broken observation chain inside an episode, or its
            metadata is not JSON-serialisable.
    """
    root = Path(path)
    meta = _jsonable_metadata(dataset.metadata)
    starts, ends = dataset.episode_starts, dataset.episode_ends
    _check_observation_chain(dataset)
    stored_info = meta.get("minari")
    minari_info: dict[str, Any] = stored_info if isinstance(stored_info, dict) else {}
    dataset_id = meta.get("dataset_id") or minari_info.get("dataset_id") or root.resolve().name
    facts: dict[str, Any] = {
        "dataset_id": str(dataset_id),
        "total_episodes": int(starts.size),
        "total_steps": len(dataset),
        "data_format": "hdf5",
        "observation_space": _observation_space_json(dataset, minari_info),
        "action_space": _action_space_json(dataset, minari_info),
    }
    if dataset.env_id is not None:
        facts["env_spec"] = _env_spec_json(dataset.env_id, minari_info.get("env_spec"))
        facts["offrl_env_id"] = dataset.env_id
    if isinstance(minari_info.get("minari_version"), str):
        facts["minari_version"] = minari_info["minari_version"]
    data_dir = root / "data"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"path: cannot create Minari directory {data_dir} ({exc})") from exc
    obs, nxt = dataset.observations, dataset.next_observations
    with _atomic_target(data_dir / _MINARI_FILE) as tmp, h5py.File(tmp, "w") as f:
        for key, value in facts.items():
            f.attrs[key] = value
        f.attrs[_OFFRL_META_ATTR] = json.dumps(meta)
        for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            group = f.create_group(f"episode_{i}")
            group.attrs["id"] = i
            group.attrs["total_steps"] = e - s + 1
            truncations = dataset.timeouts[s : e + 1].copy()
            terminations = dataset.terminals[s : e + 1]
            if not (terminations[-1] or truncations[-1]):
                truncations[-1] = True  # only possible on the final row of the dataset
            columns = {
                "observations": np.concatenate([obs[s : e + 1], nxt[e : e + 1]]),
                "actions": dataset.actions[s : e + 1],
                "rewards": dataset.rewards[s : e + 1],
                "terminations": terminations,
                "truncations": truncations,
            }
            for name, arr in columns.items():
                group.create_dataset(name, data=arr, chunks=True, maxshape=(None, *arr.shape[1:]))
    with _atomic_target(data_dir / _MINARI_METADATA) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump({**facts, _OFFRL_META_ATTR: meta}, fh)
    return root


# ====================================================================== offrl npz
def save_npz(dataset: Dataset, path: PathLike) -> Path:
    """Write ``dataset`` in offrl's own format (an uncompressed ``.npz``), atomically.

    The file holds the six transition arrays as they are (same dtypes) and ``offrl_header``: a
    ``uint8`` array of UTF-8 JSON with the env id and the metadata. :func:`load_npz` reads it
    back exactly, without pickle. Returns the path written (exactly ``path``: no ``.npz`` is
    appended).

    Raises:
        DatasetError: ``metadata`` is not JSON-serialisable (the message names the key).
    """
    p = Path(path)
    header = {
        "format": "offrl-npz",
        "version": _NPZ_FORMAT_VERSION,
        "env_id": dataset.env_id,
        "metadata": _jsonable_metadata(dataset.metadata),
    }
    payload: dict[str, Any] = dict(dataset.arrays())
    payload[_NPZ_HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with _atomic_target(p) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **payload)
    return p


@_damage_reported(".npz dataset")
def load_npz(path: PathLike, env_id: str | None = None) -> Dataset:
    """Load a ``.npz`` written by :func:`save_npz` (or a plain ``.npz`` of transition arrays).

    Loading uses ``allow_pickle=False``: a file can never run code. An offrl file round-trips
    exactly (arrays, dtypes, env id and metadata; no ``source`` is added). A plain ``.npz``
    without ``offrl_header`` needs ``observations``, ``actions`` and ``rewards`` and may hold
    ``next_observations``, ``terminals``, ``timeouts``; it is built with
    :meth:`Dataset.from_arrays` (D4RL's rule when ``next_observations`` is absent) and gets
    ``metadata["source"]`` / ``metadata["format"] = "npz"``.

    Args:
        path: the ``.npz`` file.
        env_id: overrides the stored env id.

    Raises:
        DatasetError: the file cannot be read, or an array or the header is missing/malformed
            (the message names it and the file).
    """
    p = Path(path)
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"path: cannot read {p} as an .npz file ({exc})") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetError(f"path: {p} is a single .npy array, not an .npz archive")
    with npz:
        try:
            contents = {key: npz[key] for key in npz.files}
        except ValueError as exc:  # an object array needing pickle
            raise DatasetError(f"path: {p} holds an array that needs pickle ({exc})") from exc
    if _NPZ_HEADER not in contents:
        return _load_plain_npz(p, contents, env_id)
    try:
        header = json.loads(contents.pop(_NPZ_HEADER).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{_NPZ_HEADER}: not valid JSON in {p} ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get("metadata", {}), dict):
        raise DatasetError(f"{_NPZ_HEADER}: expected a JSON object with 'metadata' in {p}")
    if header.get("format") == "offrl-frames":
        raise DatasetError(
            f"frames: {p} holds frames stored once each (a FrameDataset): read it with "
            "offrl.data.frames.load_frames; `offrl train --dataset` reads it directly"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > _NPZ_FORMAT_VERSION:
        raise DatasetError(
            f"{_NPZ_HEADER}: format version {version!r} is newer than this offrl supports "
            f"({_NPZ_FORMAT_VERSION}), in {p}"
        )
    for key in _FIELDS:
        if key not in contents:
            raise DatasetError(f"{key}: array missing from offrl file {p}")
    extra = sorted(set(contents) - set(_FIELDS))
    if extra:
        raise DatasetError(f"{extra[0]}: unexpected array in offrl file {p}")
    stored_env = header.get("env_id")
    if env_id is None and isinstance(stored_env, str):
        env_id = stored_env
    try:
        return Dataset(**contents, env_id=env_id, metadata=dict(header.get("metadata", {})))
    except DatasetError as exc:
        raise DatasetError(f"{exc} (in {p})") from exc


def _load_plain_npz(p: Path, contents: dict[str, np.ndarray], env_id: str | None) -> Dataset:
    for key in ("observations", "actions", "rewards"):
        if key not in contents:
            raise DatasetError(f"{key}: array missing from {p}")
    arrays = {k: _flatten_column(k, v) for k, v in contents.items() if k in _FIELDS}
    meta: dict[str, Any] = {"source": str(p), "format": "npz"}
    ignored = sorted(set(contents) - set(_FIELDS))
    if ignored:
        meta["ignored_keys"] = ignored
    return _build(p, arrays, env_id, meta)


# ====================================================================== dispatch
_FileReader = Callable[[Path, "str | None"], "Dataset | None"]
_FILE_READERS: list[_FileReader] = []


def _register_file_reader(reader: _FileReader) -> None:
    """Let :func:`load_dataset` read another kind of file: ``reader(path, env_id)`` returns the
    dataset of a file it recognises, ``None`` for any other, and is tried (in registration
    order) before the formats of this module. The other readers of :mod:`offrl.data` (d3rlpy
    files, tables) register themselves this way: they use this module's helpers, so this module
    cannot import them without an import cycle."""
    if reader not in _FILE_READERS:
        _FILE_READERS.append(reader)


def load_dataset(
    name_or_path: PathLike,
    env_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Load a dataset from a file, a directory or a built-in name.

    * an existing ``.npz`` file -> :func:`load_npz`;
    * an existing ``.hdf5`` / ``.h5`` file -> :func:`load_d4rl_hdf5` (or :func:`load_minari` for
      a Minari ``main_data.hdf5``, recognised by its ``episode_<i>`` groups, or
      :func:`~offrl.data.d3rlpy_files.load_d3rlpy` for a d3rlpy dump, recognised by its
      ``columns`` / ``num_episodes`` entries or d3rlpy 1.x's ``episode_terminals``);
    * a ``.csv`` / ``.parquet`` table -> an error: its columns need a mapping, given to
      :func:`~offrl.data.tabular.load_table` or ``offrl dataset convert``;
    * an existing directory -> :func:`load_minari`;
    * anything else is a dataset name, resolved by the resolvers registered in
      :mod:`offrl.data.registry` (the built-in datasets of :mod:`offrl.suite`).

    Args:
        name_or_path: a path or a built-in dataset name.
        env_id: Gymnasium id that overrides the one stored with the data.
        progress: receives what a built-in dataset's resolver reports (a first-use build).

    Raises:
        DatasetError: the file cannot be read, its type is unknown, or the name is neither an
            existing path nor a known built-in dataset.
    """
    p = Path(name_or_path)
    if p.is_dir():
        return load_minari(p, env_id=env_id)
    if p.is_file():
        for reader in _FILE_READERS:
            found = reader(p, env_id)
            if found is not None:
                return found
        suffix = p.suffix.lower()
        if suffix == ".npz":
            return load_npz(p, env_id=env_id)
        if suffix in (".hdf5", ".h5"):
            if _looks_like_minari(p):
                return load_minari(p, env_id=env_id)
            return load_d4rl_hdf5(p, env_id=env_id)
        raise DatasetError(
            f"path: unknown dataset file type {p.suffix!r} for {p} (expected .npz, .hdf5, .h5, "
            ".csv, .parquet or a Minari directory)"
        )
    name = str(name_or_path)
    try:
        dataset = resolve_dataset(name, progress)
    except LookupError as exc:
        local = minari_datasets_dir() / name
        if (local / "data").is_dir():  # a Minari dataset id the user already has
            return load_minari(local, env_id=env_id)
        if isinstance(exc, KeyError):
            detail = exc.args[0] if exc.args else ""
            raise DatasetError(
                f"name_or_path: {name!r} is neither an existing file/directory, a known "
                f"built-in dataset, nor a Minari dataset under {minari_datasets_dir()}. "
                f"{detail}".rstrip()
            ) from exc
        raise DatasetError(
            f"name_or_path: {name!r} is not an existing file or directory, and built-in "
            "datasets are not available in this installation"
        ) from exc
    if env_id is not None:
        dataset.env_id = env_id
    return dataset


# ====================================================================== Minari's local datasets
MINARI_FORMAT_VERSION = "0.5.4"
"""The Minari version whose dataset layout :func:`export_minari` writes (and the tests open
with that ``minari``)."""
_MINARI_ID_RE = re.compile(r"^(?:[\w:.-]+(?:/[\w:.-]+)*/)?[\w:.-]+?-v\d+$")


def minari_datasets_dir() -> Path:
    """Where ``minari`` keeps local datasets: ``$MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets`` (as ``minari.storage.get_dataset_path``). Not created here."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def export_minari(dataset: Dataset, dataset_id: str, datasets_dir: PathLike | None = None) -> Path:
    """Write ``dataset`` as the Minari dataset ``dataset_id`` (``namespace/name-vN``, e.g.
    ``offrl/hopper/medium-v0``) under Minari's local datasets directory (``datasets_dir``, else
    :func:`minari_datasets_dir`), where ``minari.load_dataset(dataset_id)`` and
    ``minari.list_local_datasets()`` find it, and offrl's ``--dataset dataset_id`` too.

    The layout is :func:`save_minari`'s, stamped with ``dataset_id`` and Minari's format
    version :data:`MINARI_FORMAT_VERSION`; offrl's metadata travels along, so loading it back
    gives the same dataset. Returns the dataset's directory.

    Raises:
        DatasetError: ``dataset_id`` is not a Minari id, or the dataset cannot be written.
    """
    if not _MINARI_ID_RE.match(dataset_id) or ".." in dataset_id.split("/"):
        raise DatasetError(
            f"dataset_id: {dataset_id!r} is not a Minari dataset id (namespace/name-vN, e.g. "
            "offrl/hopper/medium-v0)"
        )
    root = Path(datasets_dir) if datasets_dir is not None else minari_datasets_dir()
    meta = dict(dataset.metadata)
    info = meta.get("minari")
    meta["minari"] = {
        **(info if isinstance(info, dict) else {}),
        "dataset_id": dataset_id,
        "minari_version": MINARI_FORMAT_VERSION,
    }
    meta["dataset_id"] = dataset_id
    return save_minari(dataclasses.replace(dataset, metadata=meta), root / dataset_id)


def save_dataset(dataset: Dataset, path: PathLike, format: str | None = None) -> Path:
    """Save ``dataset``, choosing the format from ``format`` or from ``path``.

    Args:
        dataset: the data to write.
        path: destination. Without ``format``: ``.npz`` -> :func:`save_npz`; ``.hdf5`` / ``.h5``
            -> :func:`save_d4rl_hdf5`; an existing directory or a path without suffix ->
            :func:`save_minari`.
        format: ``"npz"``, ``"d4rl"`` (alias ``"hdf5"``, ``"d4rl-hdf5"``) or ``"minari"``.

    Returns:
        The path written (a file, or the Minari directory).

    Raises:
        DatasetError: unknown ``format`` or a suffix that names no format.
    """
    p = Path(path)
    if format is None:
        suffix = p.suffix.lower()
        if suffix == ".npz":
            format = "npz"
        elif suffix in (".hdf5", ".h5"):
            format = "d4rl"
        elif p.is_dir() or suffix == "":
            format = "minari"
        else:
            raise DatasetError(
                f"format: cannot infer a format from the suffix {p.suffix!r} of {p}; use .npz, "
                ".hdf5/.h5, a directory, or pass format='npz' | 'd4rl' | 'minari'"
            )
    fmt = format.lower()
    if fmt == "npz":
        return save_npz(dataset, p)
    if fmt in ("d4rl", "hdf5", "d4rl-hdf5"):
        return save_d4rl_hdf5(dataset, p)
    if fmt == "minari":
        return save_minari(dataset, p)
    raise DatasetError(f"format: unknown format {format!r} (expected 'npz', 'd4rl' or 'minari')")


# ====================================================================== helpers
# Read every attribute and the shape of every dataset of an HDF5 file, nothing else.
_PROBE = """
import sys, h5py
def visit(name, node):
    for key in node.attrs:
        node.attrs[key]
    if isinstance(node, h5py.Dataset):
        node.shape, node.dtype
with h5py.File(sys.argv[1], "r") as f:
    visit("/", f)
    f.visititems(visit)
"""
_PROBE_TIMEOUT_S = 60.0
_PROBED: set[tuple[str, int, int]] = set()


def _probe_hdf5(path: Path) -> None:
    """Read the file's HDF5 structure in a subprocess first (once per file version): some
    damaged files make the HDF5 library spin forever, holding the GIL, when an attribute is
    read (a variable-length string whose heap block is destroyed), and only another process can
    be abandoned. A probe that does not finish in :data:`_PROBE_TIMEOUT_S` is a
    :class:`DatasetError`; one that fails leaves the error to the in-process read."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _PROBED:
        return
    try:
        subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(
            f"path: {path} is damaged: reading its HDF5 structure did not finish in "
            f"{_PROBE_TIMEOUT_S:.0f} s"
        ) from exc
    _PROBED.add(key)


@contextlib.contextmanager
def _open_hdf5(path: Path) -> Iterator[Any]:
    if not path.is_file():
        raise DatasetError(f"path: file not found: {path}")
    _probe_hdf5(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"path: cannot read {path} as HDF5 ({exc})") from exc
    with f:
        yield f


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary path next to ``path``; rename it over ``path`` if the block succeeds
    (:mod:`offrl.io`), with setup problems reported as :class:`DatasetError`."""
    if path.is_dir():
        raise DatasetError(f"path: {path} is a directory, expected a file path")
    try:
        tmp = reserve_temp(path)
    except OSError as exc:
        raise DatasetError(f"path: cannot write in {path.parent} ({exc})") from exc
    with replace_when_done(tmp, path):
        yield str(tmp)


def _flatten_column(name: str, arr: np.ndarray) -> np.ndarray:
    """Accept ``[N, 1]`` rewards/flags (and integer actions) by flattening them to ``[N]``."""
    one_d = name in ("rewards", "terminals", "timeouts")
    int_actions = name == "actions" and np.issubdtype(arr.dtype, np.integer)
    if (one_d or int_actions) and arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    return arr


def _build(
    source: Path, arrays: Mapping[str, np.ndarray], env_id: str | None, meta: dict
) -> Dataset:
    """``Dataset.from_arrays`` with the file named in any error."""
    try:
        return Dataset.from_arrays(
            arrays["observations"],
            arrays["actions"],
            arrays["rewards"],
            arrays.get("next_observations"),
            arrays.get("terminals"),
            arrays.get("timeouts"),
            env_id=env_id,
            metadata=meta,
        )
    except DatasetError as exc:
        raise DatasetError(f"{exc} (in {source})") from exc


def _to_python(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _simple_value(value: Any) -> str | bool | int | float | None:
    """A scalar string/number (or a size-1 array of one) as a Python value; else ``None``."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype != object:
        value = value.reshape(())
    value = _to_python(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    return None


def _read_simple_hdf5_metadata(f: Any) -> tuple[dict[str, Any], set[str]]:
    """Scalar attrs of the root and of ``metadata/``, and scalar datasets under ``metadata/``."""
    found: dict[str, Any] = {}
    consumed: set[str] = set()
    for key, value in f.attrs.items():
        simple = _simple_value(value)
        if simple is not None:
            found[key] = simple
    group = f.get("metadata")
    if isinstance(group, h5py.Group):
        for key, value in group.attrs.items():
            if key == _OFFRL_META_ATTR:
                continue
            simple = _simple_value(value)
            if simple is not None:
                found.setdefault(key, simple)

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset) and node.size == 1:
                simple = _simple_value(node[()])
                if simple is not None:
                    found.setdefault(name, simple)
                    consumed.add(f"metadata/{name}")

        group.visititems(visit)
    return found, consumed


def _decode_offrl_metadata(group: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(group, h5py.Group) or _OFFRL_META_ATTR not in group.attrs:
        return None
    return _parse_json_object(_to_python(group.attrs[_OFFRL_META_ATTR]), _OFFRL_META_ATTR, path)


def _parse_json_object(text: Any, key: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{key}: not valid JSON in {path} ({exc})") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"{key}: expected a JSON object in {path}")
    return value


def _list_datasets(f: Any, exclude: set[str]) -> list[str]:
    names: list[str] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset) and name not in exclude:
            names.append(name)

    f.visititems(visit)
    return sorted(names)


def _find_env_id(found: Mapping[str, Any]) -> str | None:
    for key in _ENV_ID_KEYS:
        value = found.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _jsonable_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON types (numpy scalars/arrays converted); errors name the key."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str):
            raise DatasetError(f"metadata: key {key!r} is not a string")
        try:
            out[key] = json.loads(json.dumps(value, default=default))
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"metadata: value of {key!r} cannot be saved as JSON ({exc})"
            ) from exc
    return out


# ---------------------------------------------------------------------- Minari helpers
def _minari_file(p: Path) -> Path:
    if p.is_file():
        return p
    if p.is_dir():
        for candidate in (p / "data" / _MINARI_FILE, p / _MINARI_FILE):
            if candidate.is_file():
                return candidate
        raise DatasetError(
            f"path: no Minari HDF5 data in {p} (expected {p / 'data' / _MINARI_FILE}; only "
            "Minari's HDF5 back end is supported)"
        )
    raise DatasetError(f"path: not found: {p}")


@_damage_reported("HDF5 file")
def _looks_like_minari(path: Path) -> bool:
    with _open_hdf5(path) as f:
        if "observations" in f:
            return False
        return any(_EPISODE_RE.fullmatch(k) for k in f)


def _read_minari_episode(group: Any, key: str, path: Path) -> dict[str, np.ndarray] | None:
    arrays: dict[str, np.ndarray] = {}
    for name in ("observations", "actions", "rewards", "terminations", "truncations"):
        if name not in group:
            raise DatasetError(f"{key}/{name}: missing from Minari file {path}")
        node = group[name]
        if isinstance(node, h5py.Group):
            members = sorted(node.keys())
            if name == "observations":
                raise DatasetError(
                    f"observations: dict observation spaces are not supported yet ({key}/"
                    f"observations is a group of {members} in {path}); flatten the observation "
                    "space (e.g. gymnasium.wrappers.FlattenObservation) when recording"
                )
            if name == "actions":
                raise DatasetError(
                    f"actions: dict/tuple action spaces are not supported yet ({key}/actions is "
                    f"a group of {members} in {path})"
                )
            raise DatasetError(f"{key}/{name}: expected an array, found a group in {path}")
        arrays[name] = node[()]
    actions = _flatten_column("actions", arrays["actions"])
    steps = int(actions.shape[0]) if actions.ndim > 0 else 0
    for name in ("rewards", "terminations", "truncations"):
        arr = arrays[name]
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or arr.shape[0] != steps:
            raise DatasetError(
                f"{key}/{name}: expected shape [{steps}] (one per action), got {arr.shape} "
                f"in {path}"
            )
        arrays[name] = arr
    obs = arrays["observations"]
    if obs.ndim == 0 or obs.shape[0] != steps + 1:
        raise DatasetError(
            f"{key}/observations: expected {steps + 1} rows (T + 1 for T = {steps} actions), got "
            f"shape {obs.shape} in {path}"
        )
    if steps == 0:
        return None
    return {
        "observations": obs[:-1],
        "next_observations": obs[1:],
        "actions": actions,
        "rewards": arrays["rewards"],
        "terminals": _bool_flags(f"{key}/terminations", arrays["terminations"], path),
        "timeouts": _bool_flags(f"{key}/truncations", arrays["truncations"], path),
    }


def _bool_flags(name: str, arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == bool:
        return arr.copy()
    if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
        raise DatasetError(f"{name}: expected booleans (0/1) in {path}")
    return arr.astype(bool)


def _check_observation_chain(dataset: Dataset) -> None:
    n = len(dataset)
    if n < 2:
        return
    ends = np.zeros(n, dtype=bool)
    ends[dataset.episode_ends] = True
    inside = ~ends[:-1]
    obs, nxt = dataset.observations, dataset.next_observations
    same = (nxt[:-1] == obs[1:]).reshape(n - 1, -1).all(axis=1)
    broken = np.flatnonzero(inside & ~same)
    if broken.size:
        row = int(broken[0])
        episode = int(dataset.episode_ids()[row])
        raise DatasetError(
            f"next_observations: row {row} (episode {episode}) is not followed by its successor "
            f"(next_observations[{row}] != observations[{row + 1}]), so the episode cannot be "
            "written as Minari's T + 1 observations; split the episode there (set a timeout) or "
            "save as .npz / D4RL HDF5"
        )


def _env_id_from_spec(spec: Any) -> str | None:
    if not isinstance(spec, str):
        return None
    try:
        parsed = json.loads(spec)
    except ValueError:
        return None
    env = parsed.get("id") if isinstance(parsed, dict) else None
    return env if isinstance(env, str) and env else None


def _env_spec_json(env_id: str, stored: Any) -> str:
    """The stored Minari ``env_spec`` if it is for ``env_id``, else gymnasium's or a minimal one."""
    if _env_id_from_spec(stored) == env_id:
        assert isinstance(stored, str)
        return stored
    try:
        import gymnasium

        return str(gymnasium.spec(env_id).to_json())
    except Exception:  # unregistered id, gymnasium missing, unserialisable kwargs
        spec: dict[str, Any] = {
            "id": env_id,
            "entry_point": None,
            "reward_threshold": None,
            "nondeterministic": False,
            "max_episode_steps": None,
            "order_enforce": True,
            "disable_env_checker": False,
            "kwargs": {},
            "additional_wrappers": [],
            "vector_entry_point": None,
        }
        return json.dumps(spec)


def _stored_space(info: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    text = info.get(key)
    if not isinstance(text, str):
        return None
    try:
        space = json.loads(text)
    except ValueError:
        return None
    return space if isinstance(space, dict) else None


def _env_box_json(env_id: str | None, which: str, shape: tuple[int, ...]) -> str | None:
    """The environment's own Box space (bounds included), serialised as minari does, or
    ``None`` when the environment cannot be made or its space is not such a Box."""
    if env_id is None:
        return None
    try:
        import gymnasium

        env = gymnasium.make(env_id)
        space = getattr(env, which)
        env.close()
    except Exception:  # unregistered id, missing extras: fall back to unbounded boxes
        return None
    if not isinstance(space, gymnasium.spaces.Box) or tuple(space.shape) != tuple(shape):
        return None
    return json.dumps(
        {
            "type": "Box",
            "dtype": str(space.dtype),
            "shape": list(space.shape),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    )


def _observation_space_json(dataset: Dataset, info: Mapping[str, Any]) -> str:
    stored = _stored_space(info, "observation_space")
    if (
        stored is not None
        and stored.get("type") == "Box"
        and tuple(stored.get("shape", ())) == dataset.obs_shape
        and stored.get("dtype") == str(dataset.observations.dtype)
    ):
        return json.dumps(stored)
    own = _env_box_json(dataset.env_id, "observation_space", dataset.obs_shape)
    if own is not None and dataset.observations.dtype == np.float32:
        return own
    low: float
    high: float
    if dataset.observations.dtype == np.uint8:
        low, high = 0, 255
    else:
        low, high = -float("inf"), float("inf")
    space = {
        "type": "Box",
        "dtype": str(dataset.observations.dtype),
        "shape": list(dataset.obs_shape),
        # Full arrays, as minari's own serialisation writes them (it rebuilds the Box from
        # arrays of the space's shape and refuses scalars).
        "low": np.full(dataset.obs_shape, low).tolist(),
        "high": np.full(dataset.obs_shape, high).tolist(),
    }
    return json.dumps(space)


def _action_space_json(dataset: Dataset, info: Mapping[str, Any]) -> str:
    stored = _stored_space(info, "action_space")
    if dataset.discrete:
        if (
            stored is not None
            and stored.get("type") == "Discrete"
            and isinstance(stored.get("n"), int)
            and stored["n"] >= dataset.action_dim
        ):
            return json.dumps(stored)
        return json.dumps(
            {"type": "Discrete", "dtype": "int64", "start": 0, "n": dataset.action_dim}
        )
    if (
        stored is not None
        and stored.get("type") == "Box"
        and tuple(stored.get("shape", ())) == dataset.actions.shape[1:]
    ):
        return json.dumps(stored)
    own = _env_box_json(dataset.env_id, "action_space", (dataset.action_dim,))
    if own is not None:
        return own
    space = {
        "type": "Box",
        "dtype": "float32",
        "shape": [dataset.action_dim],
        "low": [-float("inf")] * dataset.action_dim,
        "high": [float("inf")] * dataset.action_dim,
    }
    return json.dumps(space)
