"""Reading d3rlpy's own dataset files (``ReplayBuffer.dump`` / ``MDPDataset.dump``, ``.h5``).

Read with plain ``h5py``: the ``d3rlpy`` package is not needed. Two layouts exist.

d3rlpy 2.x (dataset version ``"2.1"``, d3rlpy >= 2.0's ``d3rlpy.dataset.io.dump``)
    One HDF5 file with, at the root, ``version`` (the string ``"2.1"``), ``columns`` (the names
    of an episode's serialised fields: ``observations``, ``actions``, ``rewards``,
    ``terminated``), ``num_episodes``, and for every episode ``i`` the datasets
    ``observations_<i>`` ``[T, *obs_shape]``, ``actions_<i>`` ``[T, act_dim]`` (``[T, 1]`` for
    discrete actions), ``rewards_<i>`` ``[T, 1]`` and ``terminated_<i>`` (a scalar bool). Tuple
    observations are stored as ``observations_<i>_<j>``; offrl refuses them.
d3rlpy 1.x (``d3rlpy.dataset.MDPDataset.dump`` before 2.0)
    Flat ``observations``, ``actions``, ``rewards``, ``terminals`` and ``episode_terminals``
    (the last step of every episode, terminal or not), read as d3rlpy 2.x's ``load_v1`` reads
    them: a timeout is an episode end that is not a terminal.

How d3rlpy's episodes become offrl's transitions
------------------------------------------------
A d3rlpy episode holds ``T`` observations, actions and rewards and one ``terminated`` flag;
d3rlpy's ``BasicTransitionPicker`` makes ``(o_t, a_t, r_t, o_{t+1})`` of them, so

* a **terminated** episode gives ``T`` transitions, the last one with ``terminals = True``
  (its successor is never used: d3rlpy puts zeros there, offrl the next row's observation);
* an episode that **timed out** (``terminated`` false) gives ``T - 1`` transitions: its last step
  has no logged successor, so neither d3rlpy nor offrl trains on it. offrl's last transition of
  the episode gets ``timeouts = True`` (bootstrap), the step is counted in
  ``metadata["dropped_steps"]``, and an episode left with no transition (a timeout with
  ``T = 1``) in ``metadata["empty_episodes"]``.

So the loaded dataset holds exactly the transitions d3rlpy samples from the same file: episode
lengths are d3rlpy's ``Episode.transition_count``; returns are the sums of those transitions'
rewards, which for a timed-out episode is d3rlpy's ``Episode.compute_return()`` minus the
reward of the dropped last step.

Discrete or continuous actions: the file does not say. d3rlpy decides when it loads a file: an
action space is discrete when the first episode's actions are all whole numbers
(``d3rlpy.dataset.utils.detect_action_space``). :func:`load_d3rlpy` follows the same rule by
default (``discrete=None``); pass ``discrete=False`` (or ``True``) to decide yourself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.loaders import (
    PathLike,
    _build,
    _damage_reported,
    _open_hdf5,
    _register_file_reader,
    _to_python,
)

__all__ = ["load_d3rlpy", "D3RLPY_DATASET_VERSIONS"]

D3RLPY_DATASET_VERSIONS = ("2.1",)
"""The d3rlpy 2.x dataset versions offrl reads (``d3rlpy.dataset.io.DATASET_VERSION``; d3rlpy
2.8.1 writes ``"2.1"`` and itself refuses the obsolete ``"2.0"``)."""

_COLUMNS = ("observations", "actions", "rewards", "terminated")
_EPISODE_KEY = re.compile(r"([A-Za-z_]+?)_(\d+)(?:_(\d+))?")
_V1_KEYS = ("observations", "actions", "rewards", "terminals", "episode_terminals")


@_damage_reported("d3rlpy dataset file")
def load_d3rlpy(
    path: PathLike, env_id: str | None = None, *, discrete: bool | None = None
) -> Dataset:
    """Load a dataset file written by d3rlpy (``ReplayBuffer.dump`` / ``MDPDataset.dump``).

    Args:
        path: the ``.h5`` file, in d3rlpy 2.x's layout (dataset version ``"2.1"``) or d3rlpy
            1.x's flat layout (with ``episode_terminals``).
        env_id: Gymnasium id of the environment (d3rlpy's files do not store one).
        discrete: whether the actions are discrete indices. ``None`` (the default) decides as
            d3rlpy does when it loads the file: discrete when every action of the first episode
            is a whole number, with one column, and when d3rlpy would say discrete but a later
            episode holds a fraction, a :class:`DatasetError` says so. ``False`` reads the
            actions as continuous ``float32`` ``[N, act_dim]``; ``True`` as ``int64`` ``[N]``
            indices (they must be non-negative whole numbers in one column).

    Returns:
        The transitions d3rlpy itself samples from the file (see the module's documentation:
        a timed-out episode loses its last step, which has no successor). ``metadata`` holds
        ``source``, ``format`` (``"d3rlpy"``), ``d3rlpy_dataset_version``, ``d3rlpy_episodes``
        (the file's episode count), ``action_space`` (``"discrete"`` / ``"continuous"``),
        ``dropped_steps``, and when they occur ``empty_episodes``, ``ignored_keys`` (file
        entries that are not read) and, for a 1.x file, ``unended_rows`` (rows after the last
        episode end, which d3rlpy drops too).

    Raises:
        DatasetError: the file is not a d3rlpy dataset, of an unsupported version, with tuple
            observations, or malformed (a missing or mis-shaped ``observations_<i>`` ...; the
            message names the key and the file).
    """
    p = Path(path)
    with _open_hdf5(p) as f:
        if "columns" in f and "num_episodes" in f:
            episodes, version, ignored, extra = _read_v2(f, p)
        elif all(key in f for key in _V1_KEYS):
            episodes, version, ignored, extra = _read_v1(f, p)
        else:
            raise DatasetError(
                f"path: {p} is not a d3rlpy dataset file (no 'columns' / 'num_episodes' of "
                "d3rlpy 2.x, nor 'episode_terminals' of d3rlpy 1.x)"
            )
    return _assemble(p, episodes, version, {**extra, "ignored_keys": ignored}, env_id, discrete)


# ---------------------------------------------------------------------- reading the layouts
_Episode = tuple[str, np.ndarray, np.ndarray, np.ndarray, bool]
"""(the key suffix naming the episode in errors, observations, actions, rewards, terminated)."""


def _read_v2(f: Any, p: Path) -> tuple[list[_Episode], str, list[str], dict[str, Any]]:
    if "version" not in f:
        raise DatasetError(f"version: missing from d3rlpy file {p}")
    version = str(_to_python(_array(f, "version", p)))
    if version not in D3RLPY_DATASET_VERSIONS:
        raise DatasetError(
            f"version: d3rlpy dataset version {version!r} is not supported (offrl reads "
            f"{', '.join(D3RLPY_DATASET_VERSIONS)}: files of d3rlpy 2.x), in {p}"
        )
    raw = _array(f, "columns", p)
    if raw.ndim != 1:
        raise DatasetError(f"columns: expected a list of names, got shape {raw.shape} in {p}")
    columns = [_to_python(c) for c in raw]
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise DatasetError(
            f"columns: {missing[0]!r} is not among the file's episode columns {columns} in {p} "
            "(written by a custom d3rlpy Episode class?)"
        )
    count = _to_python(_array(f, "num_episodes", p))
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise DatasetError(f"num_episodes: expected a positive integer, got {count!r} in {p}")
    episodes: list[_Episode] = []
    for i in range(count):
        fields: dict[str, np.ndarray] = {}
        for name in _COLUMNS:
            key = f"{name}_{i}"
            if key not in f:
                if f"{key}_0" in f:
                    raise DatasetError(
                        f"{name}: tuple {name} are not supported ({key}_0, {key}_1, ... in {p}); "
                        "offrl datasets hold one array per step"
                    )
                raise DatasetError(f"{key}: missing from d3rlpy file {p} ({count} episodes)")
            fields[name] = _array(f, key, p)
        terminated = fields["terminated"]
        if terminated.shape not in ((), (1,)) or not _is_flag(terminated.reshape(())):
            raise DatasetError(
                f"terminated_{i}: expected one boolean, got shape {terminated.shape} of "
                f"{terminated.dtype} in {p}"
            )
        episodes.append(
            (
                f"_{i}",
                fields["observations"],
                fields["actions"],
                fields["rewards"],
                bool(terminated.reshape(())),
            )
        )
    known = {"version", "columns", "num_episodes"}
    ignored = []
    for key in f:
        match = _EPISODE_KEY.fullmatch(key)
        read = (
            match is not None
            and match.group(1) in _COLUMNS
            and match.group(3) is None
            and int(match.group(2)) < count
        )
        if key not in known and not read:
            ignored.append(key)  # other columns of a custom Episode class, stray entries
    return episodes, version, sorted(ignored), {}


def _read_v1(f: Any, p: Path) -> tuple[list[_Episode], str, list[str], dict[str, Any]]:
    arrays = {key: _array(f, key, p) for key in _V1_KEYS}
    obs = arrays["observations"]
    n = obs.shape[0] if obs.ndim > 0 else 0
    if n == 0:
        raise DatasetError(f"observations: d3rlpy file {p} holds no step")
    for key in _V1_KEYS[1:]:
        arr = arrays[key]
        if arr.ndim == 0 or arr.shape[0] != n:
            raise DatasetError(
                f"{key}: length {arr.shape[0] if arr.ndim else 0} does not match observations "
                f"({n}) in {p}"
            )
    flags = {}
    for key in ("terminals", "episode_terminals"):
        arr = arrays[key].reshape(n, -1)
        if arr.shape[1] != 1 or not _is_flag(arr):
            raise DatasetError(f"{key}: expected booleans (0/1) of shape [N] in {p}")
        flags[key] = arr[:, 0].astype(bool)
    # d3rlpy's load_v1: timeouts = episode ends that are not terminals; an episode ends at either
    # flag, and rows after the last flag belong to no episode (d3rlpy drops them).
    ends = np.flatnonzero(flags["terminals"] | flags["episode_terminals"])
    if ends.size == 0:
        raise DatasetError(f"episode_terminals: no episode end in d3rlpy file {p}")
    episodes: list[_Episode] = []
    start = 0
    for end in ends.tolist():
        rows = slice(start, end + 1)
        episodes.append(
            (
                f" (rows {start}-{end})",
                obs[rows],
                arrays["actions"][rows],
                arrays["rewards"][rows],
                bool(flags["terminals"][end]),
            )
        )
        start = end + 1
    ignored = sorted(key for key in f if key not in _V1_KEYS and key != "version")
    version = "1.0"
    if "version" in f:
        version = str(_to_python(_array(f, "version", p)))
    extra = {"unended_rows": n - start} if start < n else {}
    return episodes, version, ignored, extra


# ---------------------------------------------------------------------- assembling
def _assemble(
    p: Path,
    episodes: list[_Episode],
    version: str,
    extra: dict[str, Any],
    env_id: str | None,
    discrete: bool | None,
) -> Dataset:
    obs_parts, act_parts, rew_parts, term_parts, tout_parts = [], [], [], [], []
    first_shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    kept = 0
    empty = 0
    for suffix, obs, actions, rewards, terminated in episodes:
        steps = obs.shape[0] if obs.ndim > 0 else 0
        if obs.ndim < 2:
            raise DatasetError(
                f"observations{suffix}: expected shape [T, *obs_shape], got {obs.shape} in {p}"
            )
        if actions.ndim == 1:
            actions = actions[:, None]
        if rewards.ndim == 2 and rewards.shape[1] == 1:
            rewards = rewards[:, 0]
        for name, arr, want in (
            ("actions", actions, f"[{steps}, act_dim]"),
            ("rewards", rewards, f"[{steps}] or [{steps}, 1]"),
        ):
            if arr.shape[0] != steps or (name == "actions" and arr.ndim != 2):
                raise DatasetError(
                    f"{name}{suffix}: expected shape {want} (one per observation), got "
                    f"{arr.shape} in {p}"
                )
            if name == "rewards" and arr.ndim != 1:
                raise DatasetError(
                    f"rewards{suffix}: expected shape {want}, got {arr.shape} in {p} (vector "
                    "rewards are not supported)"
                )
        for name, arr in (("observations", obs), ("actions", actions), ("rewards", rewards)):
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
                raise DatasetError(
                    f"{name}{suffix}: expected numbers, got dtype {arr.dtype} in {p}"
                )
            row_shape = (tuple(int(d) for d in arr.shape[1:]), arr.dtype.kind)
            seen = first_shapes.setdefault(name, row_shape)
            if seen[0] != row_shape[0]:
                raise DatasetError(
                    f"{name}{suffix}: row shape {row_shape[0]} differs from the first episode's "
                    f"{seen[0]} in {p}"
                )
        if steps == 0 or (steps == 1 and not terminated):
            empty += 1  # no transition: d3rlpy's transition_count is 0
        else:
            kept += 1
        if steps == 0:
            continue
        term = np.zeros(steps, dtype=bool)
        tout = np.zeros(steps, dtype=bool)
        (term if terminated else tout)[-1] = True
        obs_parts.append(obs)
        act_parts.append(actions)
        rew_parts.append(rewards)
        term_parts.append(term)
        tout_parts.append(tout)
    if kept == 0:
        raise DatasetError(
            f"observations: no episode of {p} has a transition (every episode timed out after "
            "one step or is empty)"
        )
    observations = np.concatenate(obs_parts)
    if observations.dtype != np.uint8:
        observations = observations.astype(np.float32)
    actions_all = _actions(np.concatenate(act_parts), act_parts[0], discrete, p)
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "d3rlpy",
        "d3rlpy_dataset_version": version,
        "d3rlpy_episodes": len(episodes),
        "action_space": "discrete" if actions_all.ndim == 1 else "continuous",
    }
    if empty:
        meta["empty_episodes"] = empty
    meta.update({key: value for key, value in extra.items() if value})
    arrays = {
        "observations": observations,
        "actions": actions_all,
        "rewards": np.concatenate(rew_parts).astype(np.float32),
        "terminals": np.concatenate(term_parts),
        "timeouts": np.concatenate(tout_parts),
    }
    return _build(p, arrays, env_id, meta)


def _actions(actions: np.ndarray, first: np.ndarray, discrete: bool | None, p: Path) -> np.ndarray:
    """``[N, act_dim]`` actions as offrl's continuous ``float32`` or discrete ``int64 [N]``."""
    whole = bool(np.isfinite(actions).all()) and bool((np.round(actions) == actions).all())
    if discrete is None:
        # d3rlpy.dataset.utils.detect_action_space, applied to the first episode as d3rlpy does.
        first_whole = bool(np.isfinite(first).all()) and bool((np.round(first) == first).all())
        if first_whole and not whole:
            row = int(np.flatnonzero((np.round(actions) != actions).any(axis=1))[0])
            raise DatasetError(
                f"actions: d3rlpy would read {p} as discrete (the first episode's actions are "
                f"whole numbers) but row {row} holds {actions[row].tolist()}; pass "
                "discrete=False to read continuous actions"
            )
        discrete = first_whole and actions.shape[1] == 1
    if not discrete:
        return actions.astype(np.float32)
    if actions.shape[1] != 1:
        raise DatasetError(f"actions: discrete actions need one column, {p} has {actions.shape[1]}")
    if not whole or (actions < 0).any():
        bad = ~np.isfinite(actions[:, 0]) | (np.round(actions[:, 0]) != actions[:, 0])
        bad |= actions[:, 0] < 0
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"actions: discrete actions must be non-negative whole numbers, row {row} holds "
            f"{float(actions[row, 0])!r} in {p}; pass discrete=False to read continuous actions"
        )
    return actions[:, 0].astype(np.int64)


def _array(f: Any, key: str, p: Path) -> np.ndarray:
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{key}: expected an array, found an HDF5 group in {p}")
    return np.asarray(node[()])


def _is_flag(arr: np.ndarray) -> bool:
    if arr.dtype == bool:
        return True
    return bool(np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all())


# ---------------------------------------------------------------------- load_dataset
@_damage_reported("HDF5 file")
def _looks_like_d3rlpy(path: Path) -> bool:
    """d3rlpy 2.x: ``columns`` and ``num_episodes`` at the root (D4RL files have flat
    ``observations``, Minari files ``episode_<i>`` groups). d3rlpy 1.x: flat arrays plus
    ``episode_terminals``, which no D4RL file has."""
    with _open_hdf5(path) as f:
        if "columns" in f and "num_episodes" in f and "observations" not in f:
            return True
        return all(key in f for key in _V1_KEYS)


def _read_if_d3rlpy(path: Path, env_id: str | None) -> Dataset | None:
    if path.suffix.lower() not in (".h5", ".hdf5") or not _looks_like_d3rlpy(path):
        return None
    return load_d3rlpy(path, env_id=env_id)


_register_file_reader(_read_if_d3rlpy)
