"""Tianshou's replay buffers as offrl datasets: files written by ``ReplayBuffer.save_hdf5`` and
``VectorReplayBuffer.save_hdf5`` (the second seed's ``--save-buffer-name expert.hdf5``).

A Tianshou buffer is a ring: ``_meta/{obs, act, rew, terminated, truncated, obs_next}`` hold
``maxsize`` rows, of which ``_size`` are filled, the oldest at ``_insertion_idx`` once the ring
has wrapped. A ``VectorReplayBuffer`` is several such rings side by side in the same arrays, one
per environment, described by ``_offset``, ``_lengths`` and ``last_index``. offrl reads every
ring oldest row first, in sub-buffer order, exactly as Tianshou's own ``sample_indices(0)``
lists them:

* the episode still running in each ring when it was saved ends there, as a truncation; a
  wrapped ring's oldest episode starts wherever its first rows were overwritten;
* ``terminated`` are terminals, ``truncated`` timeouts (Tianshou's ``done`` is their union);
* frames saved one per row (``save_only_last_obs=True, stack_num=k``: the Atari recipe) are
  stacked into ``[k, H, W]`` observations as Tianshou stacks them: the ``k`` latest frames of
  the episode, the first frame repeated before the episode's (or the ring's) start;
* without ``obs_next`` (``ignore_obs_next=True``) the next observation is the next row's; the
  last row of an episode that was truncated has no logged successor and is dropped, and counted
  in ``metadata["dropped_steps"]`` (Tianshou bootstraps it from its own observation instead).

Only plain arrays and numbers are read: the pickled entries of a Tianshou file
(``_random_state``, a vector buffer's ``buffers``, pickled ``info``) are never unpickled, so a
file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

import h5py
import numpy as np

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.frames import FrameDataset
from offrl.data.loaders import (
    PathLike,
    _build,
    _damage_reported,
    _open_hdf5,
    _register_file_reader,
    _to_python,
)

__all__ = ["load_tianshou", "tianshou_frame_stack"]

_REQUIRED = ("obs", "act", "rew", "terminated", "truncated")


@overload
def load_tianshou(
    path: PathLike,
    env_id: str | None = None,
    *,
    discrete: bool | None = None,
    frames: Literal[False] = False,
) -> Dataset: ...


@overload
def load_tianshou(
    path: PathLike,
    env_id: str | None = None,
    *,
    discrete: bool | None = None,
    frames: Literal[True],
) -> FrameDataset: ...


@_damage_reported("Tianshou buffer file")
def load_tianshou(
    path: PathLike, env_id: str | None = None, *, discrete: bool | None = None, frames: bool = False
) -> Dataset | FrameDataset:
    """Load a Tianshou replay buffer saved with ``save_hdf5``.

    Args:
        path: the ``.hdf5`` / ``.h5`` file.
        env_id: the Gymnasium environment the data comes from (Tianshou files do not name it).
        discrete: read the actions as discrete indices (``int64 [N]``) or continuous vectors;
            ``None`` decides from the array (integers in one column: discrete).
        frames: for a buffer of single frames (``save_only_last_obs=True, stack_num=k``),
            return a :class:`~offrl.data.frames.FrameDataset`: each frame stored once and
            stacked when batches are drawn (a 1M-step Atari buffer in about 7 GB instead of
            56), the same transitions as the stacked reading.

    Raises:
        DatasetError: a required array is missing or malformed (the message names it), or the
            buffer is empty.
    """
    p = Path(path)
    with _open_hdf5(p) as f:
        meta_group = f.get("_meta")
        if not isinstance(meta_group, h5py.Group):
            raise DatasetError(f"_meta: no Tianshou buffer data (a group '_meta') in {p}")
        for key in _REQUIRED:
            if not isinstance(meta_group.get(key), h5py.Dataset):
                raise DatasetError(f"_meta/{key}: missing from the Tianshou buffer {p}")
        attrs = {k: _to_python(v) for k, v in f.attrs.items()}
        segments, wrapped = _segments(f, attrs, p)
        order = np.concatenate([s for s in segments if len(s)]) if segments else np.array([])
        if order.size == 0:
            raise DatasetError(f"_meta: the Tianshou buffer {p} holds no transition")
        arrays = {key: np.asarray(meta_group[key][()]) for key in _REQUIRED}
        save_next = bool(attrs.get("_save_obs_next", True)) and "obs_next" in meta_group
        obs_next = np.asarray(meta_group["obs_next"][()]) if save_next else None
    capacity = len(arrays["obs"])
    for key, value in arrays.items():
        if len(value) != capacity:
            raise DatasetError(
                f"_meta/{key}: {len(value)} rows where _meta/obs has {capacity} in {p}"
            )
    if order.max() >= capacity:
        raise DatasetError(f"_meta: the buffer's indices reach row {order.max()} of {capacity}")
    terminated = _flags(arrays["terminated"], "terminated", p)[order]
    truncated = _flags(arrays["truncated"], "truncated", p)[order]
    # Each ring's last stored row ends its episode (one still running when it was saved).
    ring_end = np.zeros(len(order), dtype=bool)
    ring_end[np.cumsum([len(s) for s in segments if len(s)]) - 1] = True
    timeouts = (truncated | ring_end) & ~terminated
    stack = int(attrs.get("stack_num", 1))
    observations = arrays["obs"]
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "tianshou-hdf5",
        "tianshou_sub_buffers": len(segments),
        "tianshou_stack_num": stack,
        "tianshou_wrapped_rings": wrapped,
    }
    if frames:
        if stack < 2 or observations.dtype != np.uint8 or observations.ndim != 3:
            raise DatasetError(
                f"_meta/obs: frames=True reads single uint8 frames saved with stack_num > 1; "
                f"{p} holds {observations.dtype} {observations.shape[1:]} with stack_num {stack}"
            )
        return FrameDataset.from_steps(
            observations[order],
            _actions(arrays["act"][order], True, p),
            arrays["rew"][order].reshape(len(order)),
            terminated,
            timeouts,
            stack,
            env_id=env_id,
            metadata=meta,
        )
    if stack > 1:
        ring_start = np.r_[True, ring_end[:-1]]
        rows = _stack_rows(order, terminated | truncated, ring_start, stack)  # [N, stack]
        observations = observations[rows]
    else:
        observations = observations[order]
    if observations.dtype != np.uint8:
        observations = observations.astype(np.float32)
    data = {
        "observations": observations,
        "actions": _actions(arrays["act"][order], discrete, p),
        "rewards": arrays["rew"][order].reshape(len(order)).astype(np.float32),
        "terminals": terminated,
        "timeouts": timeouts,
    }
    if obs_next is not None and stack == 1:
        data["next_observations"] = obs_next[order].astype(observations.dtype)
    return _build(p, data, env_id, meta)


def _segments(f: h5py.File, attrs: dict[str, Any], p: Path) -> tuple[list[np.ndarray], int]:
    """The stored rows of each ring, oldest first (Tianshou's ``sample_indices(0)``), and how
    many rings have wrapped."""

    def array(key: str) -> np.ndarray:
        node = f.get(key)
        if not isinstance(node, h5py.Dataset):
            raise DatasetError(f"{key}: missing from the Tianshou vector buffer {p}")
        return np.asarray(node[()]).astype(np.int64).reshape(-1)

    if "_offset" in f:  # a VectorReplayBuffer (ReplayBufferManager)
        offsets, edges = array("_offset"), array("_extend_offset")
        lengths, last = array("_lengths"), array("last_index")
        if not len(offsets) == len(lengths) == len(last) == len(edges) - 1:
            raise DatasetError(f"_offset: the sub-buffer tables of {p} disagree in length")
        rings: list[tuple[Any, ...]] = list(
            zip(offsets, edges[1:] - offsets, lengths, last - offsets + 1, strict=True)
        )
    else:
        for key in ("maxsize", "_size", "_insertion_idx"):
            if key not in attrs:
                raise DatasetError(f"{key}: missing from the Tianshou buffer {p}")
        single = (0, int(attrs["maxsize"]), int(attrs["_size"]), int(attrs["_insertion_idx"]))
        rings = [single]
    out, wrapped = [], 0
    for offset, cap, size, insert in rings:
        if not 0 <= size <= cap:
            raise DatasetError(f"_size: {size} stored rows in a ring of {cap} in {p}")
        insert = int(insert) % cap if cap else 0
        wrapped += int(size == cap and size > 0)
        rows = np.r_[np.arange(insert, size), np.arange(insert)] if size == cap else np.arange(size)
        out.append(offset + rows)
    return out, wrapped


def _stack_rows(order: np.ndarray, done: np.ndarray, ring_start: np.ndarray, k: int) -> np.ndarray:
    """``[N, k]`` buffer rows of each row's ``k`` latest frames, oldest first: frames before the
    episode's first row (or the ring's oldest) repeat that first frame, as Tianshou's ``prev``."""
    n = len(order)
    # Position (in ``order``) of the first row of each row's episode.
    starts = ring_start | np.r_[True, done[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    back = np.arange(k - 1, -1, -1)  # k - 1 steps back ... 0
    pos = np.maximum(np.arange(n)[:, None] - back[None, :], first[:, None])
    return order[pos]


def _flags(values: np.ndarray, key: str, p: Path) -> np.ndarray:
    flat = values.reshape(len(values), -1)
    if flat.shape[1] != 1:
        raise DatasetError(f"_meta/{key}: expected one flag per row, found shape {values.shape}")
    if values.dtype != bool and not np.isin(flat, (0, 1)).all():
        raise DatasetError(f"_meta/{key}: flags must be 0/1 or booleans in {p}")
    return flat[:, 0].astype(bool)


def _actions(act: np.ndarray, discrete: bool | None, p: Path) -> np.ndarray:
    """Integer actions in one column: discrete ``int64 [N]``; anything else ``float32 [N, d]``."""
    flat = act.reshape(len(act), -1)
    integer = np.issubdtype(act.dtype, np.integer)
    if discrete is None:
        discrete = integer and flat.shape[1] == 1
    if not discrete:
        return flat.astype(np.float32)
    if flat.shape[1] != 1 or not integer or (flat < 0).any():
        raise DatasetError(
            f"_meta/act: discrete actions must be one non-negative integer per row, found "
            f"{act.dtype} of shape {act.shape} in {p}"
        )
    return flat[:, 0].astype(np.int64)


def tianshou_frame_stack(path: PathLike) -> int:
    """The ``stack_num`` of a Tianshou buffer of single ``uint8`` frames (the Atari recipe,
    which :func:`load_tianshou` reads with ``frames=True``); 0 for anything else."""
    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5") or not p.is_file() or not _looks_like_tianshou(p):
        return 0
    with _open_hdf5(p) as f:
        obs = f.get("_meta/obs")
        stack = int(_to_python(f.attrs.get("stack_num", 1)))
        frames = isinstance(obs, h5py.Dataset) and obs.dtype == np.uint8 and obs.ndim == 3
    return stack if frames and stack > 1 else 0


@_damage_reported("HDF5 file")
def _looks_like_tianshou(path: Path) -> bool:
    with _open_hdf5(path) as f:
        return isinstance(f.get("_meta"), h5py.Group) and "maxsize" in f.attrs


def _read_if_tianshou(path: Path, env_id: str | None) -> Dataset | None:
    if path.suffix.lower() not in (".h5", ".hdf5") or not _looks_like_tianshou(path):
        return None
    return load_tianshou(path, env_id=env_id)


_register_file_reader(_read_if_tianshou)
