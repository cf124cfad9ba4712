"""Image transitions stored one frame per step, stacked when a batch is drawn.

An Atari observation is the last 4 frames of 84 x 84 bytes. Stored as stacks, with the next
observation beside each, a 1M-step buffer takes 2 x 4 x 7 KB x 1M = 56 GB; stored once per
frame, 7 GB. A :class:`FrameDataset` keeps each episode's frames contiguously, preceded by
``stack - 1`` copies of its first frame (the stack at an episode's start repeats that frame, as
Gymnasium's ``FrameStackObservation`` with ``padding_type="reset"`` and Tianshou's buffers do)::

    frames:  [pad pad pad f0 f1 f2 ... fT | pad pad pad g0 g1 ... | ...]
    index:              ^  ^  ^        transition t's newest frame; its next observation's is
                                       index[t] + 1

so transition ``t``'s observation is ``frames[index[t] - stack + 1 : index[t] + 1]`` and its next
observation the same window one frame later: never across an episode, never copied. The last
step of an episode that ends at a terminal has one frame after it (a copy: its value is never
bootstrapped); an episode cut by a time limit without its successor loses its last step, whose
frame is then the successor of the step before (D4RL's rule, as :meth:`Dataset.from_arrays`).

:class:`FrameSampler` draws batches of ``[B, stack, H, W]`` ``uint8`` stacks with one gather.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl.data.dataset import (
    Dataset,
    DatasetError,
    EpisodeStructure,
    array_digest,
    check_action_indices,
)
from offrl.data.loaders import _NPZ_HEADER, PathLike, _atomic_target, _jsonable_metadata
from offrl.data.sampler import Batch, UniformSampler

__all__ = ["FrameDataset", "FrameSampler", "save_frames", "load_frames", "is_frames_file"]

_FRAME_FIELDS = ("frames", "index", "actions", "rewards", "terminals", "timeouts")
"""The arrays of a :class:`FrameDataset`, in file and fingerprint order."""
FRAMES_FORMAT = "offrl-frames"
"""The ``format`` in the header of a :func:`save_frames` file."""


@dataclass
class FrameDataset(EpisodeStructure):
    """Discrete-action transitions over stacked ``uint8`` frames, each frame stored once.

    Build one with :meth:`from_steps`. The observation of transition ``t`` is
    :meth:`stacked` ``([t])``; ``len()``, :attr:`obs_shape`, the episode methods and
    :meth:`select` behave as :class:`~offrl.data.Dataset`'s.
    """

    frames: np.ndarray
    """``[M, H, W]`` uint8: every episode's frames with its padding (module docstring)."""
    index: np.ndarray
    """``[N]`` int64: the newest frame of each transition's observation."""
    actions: np.ndarray
    """``[N]`` int64 action indices."""
    rewards: np.ndarray
    """``[N]`` float32."""
    terminals: np.ndarray
    """``[N]`` bool: true environment ends (no bootstrap)."""
    timeouts: np.ndarray
    """``[N]`` bool: truncations (bootstrap from the next observation)."""
    stack: int = 4
    """Frames per observation."""
    env_id: str | None = None
    """Gymnasium id of the environment that produced the data, when known."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable facts about the data."""

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_steps(
        cls,
        frames: Any,
        actions: Any,
        rewards: Any,
        terminals: Any,
        timeouts: Any,
        stack: int = 4,
        *,
        env_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> FrameDataset:
        """Build from per-step arrays in logging order: ``frames[t]`` (``[N, H, W]`` uint8) is the
        newest frame of the observation step ``t`` acted in.

        An episode ends at a terminal, a timeout, or the last row. Its successor frame is the
        next row's within the episode; a terminal's is a copy of its own frame (never
        bootstrapped); the last step of an episode ending otherwise has no logged successor and
        is dropped, its predecessor becoming the truncated end (counted in
        ``metadata["dropped_steps"]``).
        """
        f = np.asarray(frames)
        if f.dtype != np.uint8 or f.ndim != 3:
            raise DatasetError(
                f"frames: expected uint8 frames of shape [N, H, W], got {f.dtype} {f.shape}"
            )
        n = f.shape[0]
        if n == 0:
            raise DatasetError("frames: the dataset is empty")
        acts, rews = np.asarray(actions), np.asarray(rewards, dtype=np.float32)
        term, tout = (np.asarray(x, dtype=bool).reshape(-1) for x in (terminals, timeouts))
        for name, arr in (("actions", acts), ("rewards", rews), ("terminals", term),
                          ("timeouts", tout)):  # fmt: skip
            if arr.shape[0] != n:
                raise DatasetError(f"{name}: expected {n} rows like frames, got {arr.shape[0]}")
        if stack < 1:
            raise DatasetError(f"stack: must be at least 1, got {stack}")
        ends = term | tout
        ends[-1] = True
        starts = np.r_[0, np.flatnonzero(ends)[:-1] + 1]
        stops = np.flatnonzero(ends) + 1  # one past each episode's last step
        blocks, index, keep = [], [], []
        offset = 0
        for s, e in zip(starts, stops, strict=True):
            rows = np.arange(s, e) if term[e - 1] else np.arange(s, e - 1)
            if rows.size == 0:  # a one-step episode without a successor: nothing to keep
                continue
            ep = f[s:e]
            extra = ep[-1:] if term[e - 1] else ep[:0]  # a terminal's (unused) successor
            blocks += [np.repeat(ep[:1], stack - 1, axis=0), ep, extra]
            keep.append(rows)
            index.append(offset + stack - 1 + (rows - s))
            offset += stack - 1 + len(ep) + len(extra)
        kept = np.concatenate(keep)
        if kept.size == 0:
            raise DatasetError("frames: no transition has a successor (every episode is 1 step)")
        new_tout = tout.copy()
        cut_short = ~term[stops - 1] & (stops - 1 > starts)  # a step before the dropped one
        new_tout[stops[cut_short] - 2] = True
        meta = dict(metadata or {})
        meta["dropped_steps"] = int(meta.get("dropped_steps", 0)) + n - kept.size
        return cls(
            frames=np.concatenate(blocks),
            index=np.concatenate(index).astype(np.int64),
            actions=acts[kept],
            rewards=rews[kept],
            terminals=term[kept],
            timeouts=new_tout[kept] & ~term[kept],
            stack=stack,
            env_id=env_id,
            metadata=meta,
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, dtypes and that every stack lies inside the frames; raise
        :class:`~offrl.data.DatasetError` naming the field."""
        if not isinstance(self.frames, np.ndarray) or self.frames.dtype != np.uint8:
            got = getattr(self.frames, "dtype", type(self.frames).__name__)
            raise DatasetError(f"frames: expected a uint8 array, got {got}")
        if self.frames.ndim != 3:
            raise DatasetError(f"frames: expected shape [M, H, W], got {self.frames.shape}")
        n = len(self.index)
        if n == 0:
            raise DatasetError("index: the dataset is empty")
        self.index = np.asarray(self.index, dtype=np.int64)
        for name in ("actions", "rewards", "terminals", "timeouts"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise DatasetError(f"{name}: expected shape ({n},) like index, got {arr.shape}")
        if not np.issubdtype(np.asarray(self.actions).dtype, np.integer):
            raise DatasetError(f"actions: expected integer indices, got {self.actions.dtype}")
        self.actions = np.asarray(self.actions, dtype=np.int64)
        if (self.actions < 0).any():
            raise DatasetError("actions: discrete actions must be non-negative indices")
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        if not np.isfinite(self.rewards).all():
            bad = int(np.flatnonzero(~np.isfinite(self.rewards))[0])
            raise DatasetError(f"rewards: contains NaN or inf (first at row {bad})")
        self.terminals = np.asarray(self.terminals, dtype=bool)
        self.timeouts = np.asarray(self.timeouts, dtype=bool)
        low, high = self.index.min(), self.index.max()
        if low < self.stack - 1 or high + 1 >= len(self.frames):
            raise DatasetError(
                f"index: frames {low}..{high + 1} with stacks of {self.stack} do not lie within "
                f"the {len(self.frames)} stored frames"
            )

    def check_action_space(self, low: Any, high: Any) -> None:
        """Raise :class:`~offrl.data.DatasetError` if an action index is ``>= high`` (the number
        of actions; ``low`` is ignored), as :meth:`Dataset.check_action_space`."""
        del low
        check_action_indices(self.actions, int(np.asarray(high)))

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return int(self.index.shape[0])

    discrete = True
    """Frame datasets have discrete actions."""

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """``(stack, H, W)``."""
        return (self.stack, *(int(d) for d in self.frames.shape[1:]))

    @property
    def action_dim(self) -> int:
        """The number of actions seen (max + 1)."""
        return int(self.actions.max()) + 1

    def window(self, rows: np.ndarray, next_obs: bool = False) -> np.ndarray:
        """``[n, stack]`` frame numbers of the observations (or next observations) of ``rows``."""
        newest = self.index[np.asarray(rows)] + int(next_obs)
        return newest[:, None] + np.arange(1 - self.stack, 1)

    def stacked(self, rows: Any, next_obs: bool = False) -> np.ndarray:
        """``[n, stack, H, W]`` uint8: the observations (or next observations) of ``rows``."""
        return self.frames[self.window(np.asarray(rows).reshape(-1), next_obs)]

    def to_dataset(self) -> Dataset:
        """Every stack materialised: a :class:`~offrl.data.Dataset` (``2 * stack`` times the
        frames' memory: for small data, other formats and the tools that need arrays)."""
        rows = np.arange(len(self))
        return Dataset(
            observations=self.stacked(rows),
            actions=self.actions.copy(),
            rewards=self.rewards.copy(),
            next_observations=self.stacked(rows, next_obs=True),
            terminals=self.terminals.copy(),
            timeouts=self.timeouts.copy(),
            env_id=self.env_id,
            metadata=dict(self.metadata),
        )

    def select(self, mask_or_index: np.ndarray) -> FrameDataset:
        """A new frame dataset of the given rows, keeping only the frames their stacks use."""
        rows = np.arange(len(self))[np.asarray(mask_or_index)]
        if rows.size == 0:
            raise DatasetError("index: no row selected")
        newest = self.index[rows]
        used = np.unique(np.c_[self.window(rows), newest + 1])
        return FrameDataset(
            frames=self.frames[used],
            index=np.searchsorted(used, self.index[rows]).astype(np.int64),
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            terminals=self.terminals[rows],
            timeouts=self.timeouts[rows],
            stack=self.stack,
            env_id=self.env_id,
            metadata=dict(self.metadata),
        )

    def fingerprint(self) -> str:
        """A SHA-256 of the frames, the index and the transition arrays, 16 hex digits (as
        :meth:`Dataset.fingerprint`)."""
        arrays = {name: getattr(self, name) for name in _FRAME_FIELDS}
        return array_digest(arrays, prefix=f"frames/{self.stack};")


class FrameSampler(UniformSampler):
    """Uniform batches of stacked frames from a :class:`FrameDataset`, seeded: one gather of
    ``[B, stack]`` frames for the observations and one for the next observations.

    Args:
        dataset: the transitions (rewards already transformed).
        batch_size: rows per batch.
        seed: seed of the sampler's own generator.
        device: where the frames live (the whole frame store is moved there once).
        returns_gamma: also fill ``Batch.returns_to_go``, discounted by this factor.
    """

    def __init__(
        self,
        dataset: FrameDataset,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
        returns_gamma: float | None = None,
        **unused: Any,
    ) -> None:
        if unused.get("next_actions"):
            raise ValueError("FrameSampler does not fill Batch.next_actions")
        super().__init__(batch_size, seed, device)
        self.size = len(dataset)
        self.frames = torch.from_numpy(dataset.frames).to(self.device)
        self.index = torch.from_numpy(dataset.index).to(self.device)
        self.offsets = torch.arange(1 - dataset.stack, 1, device=self.device)
        self.actions = torch.from_numpy(dataset.actions).to(self.device)
        self.rewards = torch.from_numpy(dataset.rewards).to(self.device)
        self.dones = torch.from_numpy(dataset.terminals.astype(np.float32)).to(self.device)
        self.keep_returns(dataset, returns_gamma)

    def rows_batch(self, idx: torch.Tensor) -> Batch:
        """The batch of the given rows."""
        window = self.index.index_select(0, idx)[:, None] + self.offsets  # [B, stack]
        obs = self.frames[window]
        next_obs = self.frames[window + 1]
        rtg = None if self.returns is None else self.returns.index_select(0, idx)
        return Batch(
            obs,
            self.actions.index_select(0, idx),
            self.rewards.index_select(0, idx),
            next_obs,
            self.dones.index_select(0, idx),
            idx,
            None,
            rtg,
        )


def save_frames(dataset: FrameDataset, path: PathLike) -> Path:
    """Write ``dataset`` as an uncompressed ``.npz`` (the frames once each, the index and the
    transition arrays, and a JSON header with the stack, env id and metadata), atomically.
    :func:`load_frames` reads it back exactly, without pickle; ``offrl train --dataset`` reads
    it directly."""
    p = Path(path)
    header = {
        "format": FRAMES_FORMAT,
        "version": 1,
        "stack": dataset.stack,
        "env_id": dataset.env_id,
        "metadata": _jsonable_metadata(dataset.metadata),
    }
    payload: dict[str, Any] = {k: getattr(dataset, k) for k in _FRAME_FIELDS}
    payload[_NPZ_HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with _atomic_target(p) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **payload)
    return p


def _header(npz: Any, p: Path) -> dict[str, Any] | None:
    if _NPZ_HEADER not in npz.files:
        return None
    try:
        header = json.loads(npz[_NPZ_HEADER].tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{_NPZ_HEADER}: not valid JSON in {p} ({exc})") from exc
    return header if isinstance(header, dict) else None


def is_frames_file(path: PathLike) -> bool:
    """Whether ``path`` is a ``.npz`` written by :func:`save_frames`."""
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p, allow_pickle=False) as npz:
            header = _header(npz, p)
    except (OSError, ValueError, DatasetError):
        return False
    return header is not None and header.get("format") == FRAMES_FORMAT


def load_frames(path: PathLike, env_id: str | None = None) -> FrameDataset:
    """Load a file written by :func:`save_frames` (no pickle: a file cannot run code).

    Raises:
        DatasetError: the file is not one, or an array is missing or malformed (the message
            names it and the file).
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as npz:
            header = _header(npz, p)
            if header is None or header.get("format") != FRAMES_FORMAT:
                raise DatasetError(f"{_NPZ_HEADER}: {p} is not an offrl frames file")
            missing = [k for k in _FRAME_FIELDS if k not in npz.files]
            if missing:
                raise DatasetError(f"{missing[0]}: array missing from the frames file {p}")
            arrays = {k: npz[k] for k in _FRAME_FIELDS}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"path: cannot read {p} as an .npz file ({exc})") from exc
    stored = header.get("env_id")
    try:
        return FrameDataset(
            **arrays,
            stack=int(header.get("stack", 4)),
            env_id=env_id or (stored if isinstance(stored, str) else None),
            metadata=dict(header.get("metadata") or {}),
        )
    except DatasetError as exc:
        raise DatasetError(f"{exc} (in {p})") from exc
