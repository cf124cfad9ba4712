"""The transition dataset: one container for every source of offline data.

A :class:`Dataset` holds flat, aligned arrays of transitions ``(s, a, r, s', terminal, timeout)``
in logging order, so that consecutive transitions of an episode are consecutive rows. Two flags
are kept apart on purpose:

* ``terminals`` -- the environment really ended (the pole fell, the robot flipped). The value of
  ``s'`` is zero: TD targets must **not** bootstrap.
* ``timeouts`` -- the episode was cut by a time limit (truncation). ``s'`` is a real state whose
  value is not zero: TD targets **must** bootstrap.

Conflating the two is the classic D4RL bug (a time limit taught as a "death"). Episode boundaries
are where either flag is set; the last row always closes the last episode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from offrl.errors import OfflineRLError

__all__ = ["Dataset", "DatasetError", "EpisodeStats", "EpisodeStructure"]


class DatasetError(OfflineRLError, ValueError):
    """Malformed offline data. The message names the offending field."""


_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


@dataclass(frozen=True)
class EpisodeStats:
    """Summary of a dataset's episodes (returns are undiscounted sums of rewards)."""

    num_transitions: int
    num_episodes: int
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    length_mean: float


_E = TypeVar("_E", bound="EpisodeStructure")


class EpisodeStructure:
    """Episode arithmetic over ``rewards``, ``terminals`` and ``timeouts`` in logging order,
    shared by :class:`Dataset` and :class:`~offrl.data.frames.FrameDataset`. A subclass has
    those three ``[N]`` arrays, ``metadata``, ``__len__`` and ``select(rows)``."""

    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any]

    def __len__(self) -> int:
        raise NotImplementedError

    def select(self: _E, mask_or_index: np.ndarray) -> _E:
        """A new dataset holding the given rows (a boolean mask or integer indices)."""
        raise NotImplementedError

    @property
    def episode_ends(self) -> np.ndarray:
        """Indices of the last transition of each episode (terminal, timeout, or final row)."""
        ends = self.terminals | self.timeouts
        ends = ends.copy()
        ends[-1] = True
        return np.flatnonzero(ends)

    @property
    def episode_starts(self) -> np.ndarray:
        """Indices of the first transition of each episode."""
        return np.concatenate([[0], self.episode_ends[:-1] + 1]).astype(np.int64)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in order."""
        csum = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        return csum[self.episode_ends + 1] - csum[self.episode_starts]

    def episode_ids(self) -> np.ndarray:
        """``[N]`` index of the episode each transition belongs to."""
        ids = np.zeros(len(self), dtype=np.int64)
        ids[self.episode_ends[:-1] + 1] = 1
        return np.cumsum(ids)

    def stats(self) -> EpisodeStats:
        """Transitions, episodes and return statistics."""
        rets = self.episode_returns()
        lengths = self.episode_ends - self.episode_starts + 1
        return EpisodeStats(
            num_transitions=len(self),
            num_episodes=int(rets.size),
            return_mean=float(rets.mean()),
            return_std=float(rets.std()),
            return_min=float(rets.min()),
            return_max=float(rets.max()),
            length_mean=float(lengths.mean()),
        )

    def select_episodes(self: _E, episodes: np.ndarray) -> _E:
        """A new dataset holding whole episodes (by episode index), in the given order.

        Episode boundaries are kept: an episode that ended only by being the dataset's last row
        (no flag) is closed with ``timeouts = True`` if it is no longer last.
        """
        starts, ends = self.episode_starts, self.episode_ends
        idx = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise DatasetError("episodes: no episode selected")
        if idx.min() < 0 or idx.max() >= starts.size:
            raise DatasetError(
                f"episodes: index out of range (the dataset has {starts.size} episodes)"
            )
        rows = np.concatenate([np.arange(starts[e], ends[e] + 1) for e in idx])
        out = self.select(rows)
        # Every selected episode must stay closed: the dataset's final episode may end by being
        # the last row (no flag); moved in front of another one it would merge with it. Its
        # next_observation is real, so it is closed as a truncation.
        last = np.cumsum(ends[idx] - starts[idx] + 1) - 1
        open_end = last[~(out.terminals[last] | out.timeouts[last])]
        out.timeouts[open_end[open_end < len(out) - 1]] = True
        return out

    def subsample_episodes(self: _E, fraction: float, seed: int = 0) -> _E:
        """A seeded random ``fraction`` of the episodes (at least one), kept in their original
        order: the dataset-size ablation (10 %, 1 %...)."""
        if not 0.0 < fraction <= 1.0:
            raise DatasetError(f"fraction: must be in (0, 1], got {fraction}")
        n = self.episode_starts.size
        keep = max(1, round(fraction * n))
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=keep, replace=False))
        out = self.select_episodes(chosen)
        out.metadata = {**self.metadata, "subsample_fraction": fraction, "subsample_seed": seed}
        return out

    def top_episodes(self: _E, fraction: float) -> _E:
        """The best ``fraction`` of the episodes by undiscounted return, kept in their original
        order: the data of %BC (Chen et al., 2021; CORL's ``keep_best_trajectories``).

        As in CORL, ``max(1, int(fraction * num_episodes))`` episodes are kept (rounded down,
        at least one); ties go to the earlier episode.
        """
        if not 0.0 < fraction <= 1.0:
            raise DatasetError(f"fraction: must be in (0, 1], got {fraction}")
        rets = self.episode_returns()
        keep = max(1, int(fraction * rets.size))
        best = np.argsort(-rets, kind="stable")[:keep]
        out = self.select_episodes(np.sort(best))
        out.metadata = {**self.metadata, "top_episodes_fraction": fraction}
        return out

    def returns_to_go(
        self, gamma: float = 1.0, lam: float = 1.0, next_values: np.ndarray | None = None
    ) -> np.ndarray:
        """``[N]`` float64 discounted return of every transition to the end of its episode.

        With ``next_values`` (``V(s')`` for every row) this is the TD(lambda) return::

            G_t = r_t + gamma * ((1 - lam) V(s'_t) + lam G_{t+1})    inside an episode
            G_t = r_t                                                 at a terminal
            G_t = r_t + gamma V(s'_t)                                 at a truncation

        so ``lam = 1`` is the Monte-Carlo return with a bootstrap at truncations and ``lam = 0``
        the one-step TD target. Without ``next_values``, truncated episodes do not bootstrap
        (plain Monte-Carlo returns-to-go; ``lam`` must then be 1). The recursion runs backwards
        over all episodes at once, one vectorised step per position from the episode end.
        """
        n = len(self)
        rewards = self.rewards.astype(np.float64)
        if next_values is None:
            if lam != 1.0:
                raise ValueError("returns_to_go: lam < 1 needs next_values")
            v_next = np.zeros(n)
        else:
            v_next = np.asarray(next_values, dtype=np.float64).reshape(-1)
            if v_next.shape != (n,):
                raise ValueError(f"next_values: expected shape ({n},), got {v_next.shape}")
        ends, starts = self.episode_ends, self.episode_starts
        out = np.empty(n)
        # Episode ends: nothing after them but V(s') (truncation) or zero (terminal).
        out[ends] = rewards[ends] + gamma * (~self.terminals[ends]) * v_next[ends]
        # Inside episodes, terminals cannot occur (a terminal ends its episode).
        inner = rewards + gamma * (1.0 - lam) * v_next
        lengths = ends - starts + 1
        for k in range(1, int(lengths.max())):
            rows = ends[lengths > k] - k  # the k-th row from the end of each long-enough episode
            out[rows] = inner[rows] + gamma * lam * out[rows + 1]
        return out


@dataclass
class Dataset(EpisodeStructure):
    """Aligned transitions with their episode structure.

    Build one from your own arrays with :meth:`from_arrays` (or :func:`offrl.data.load_dataset`
    for files and built-in names). Every array is validated on construction: wrong shapes, dtypes,
    lengths, NaN/inf values and empty data raise :class:`DatasetError` naming the field.
    """

    observations: np.ndarray
    """``[N, *obs_shape]`` float32 (uint8 allowed for images)."""
    actions: np.ndarray
    """``[N, act_dim]`` float32 for continuous actions, ``[N]`` int64 for discrete ones."""
    rewards: np.ndarray
    """``[N]`` float32."""
    next_observations: np.ndarray
    """``[N, *obs_shape]``, same dtype as ``observations``."""
    terminals: np.ndarray
    """``[N]`` bool: true environment ends (no bootstrap)."""
    timeouts: np.ndarray
    """``[N]`` bool: truncations (bootstrap from ``next_observations``)."""
    env_id: str | None = None
    """Gymnasium id of the environment that produced the data, when known (enables evaluation)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable facts about the data: behaviour policy, source file, dropped steps..."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        observations: Any,
        actions: Any,
        rewards: Any,
        next_observations: Any | None = None,
        terminals: Any | None = None,
        timeouts: Any | None = None,
        *,
        env_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset from arrays (or lists) of logged data.

        ``observations`` are the states the actions were taken in. If ``next_observations`` is
        omitted, the successor of step ``i`` is ``observations[i + 1]`` within an episode; the
        last step of an episode then needs a successor that was not logged, so it is dropped
        unless it is a terminal (whose successor is never used). Dropped steps are counted in
        ``metadata["dropped_steps"]`` -- nothing disappears silently. Missing ``terminals`` /
        ``timeouts`` mean "no such events"; the last row always ends the last episode.
        """
        obs = _as_array("observations", observations)
        n = obs.shape[0] if obs.ndim > 0 else 0
        term = _flags("terminals", terminals, n)
        tout = _flags("timeouts", timeouts, n)
        meta = dict(metadata or {})
        if next_observations is not None:
            return cls(
                observations=obs,
                actions=_as_array("actions", actions),
                rewards=_as_array("rewards", rewards),
                next_observations=_as_array("next_observations", next_observations),
                terminals=term,
                timeouts=tout,
                env_id=env_id,
                metadata=meta,
            )
        acts = _as_array("actions", actions)
        rews = _as_array("rewards", rewards)
        _check_len("actions", acts, n)
        _check_len("rewards", rews, n)
        if n == 0:
            raise DatasetError("observations: the dataset is empty")
        # Successor of i is obs[i+1] unless i ends an episode. An episode end that is a timeout
        # (or the final row) has no logged successor: D4RL's rule is to drop that step, and the
        # step before it becomes the (truncated) end of the episode.
        ends = term | tout
        ends[-1] = True
        no_successor = ends & ~term
        keep = ~no_successor
        nxt = np.empty_like(obs)
        nxt[:-1] = obs[1:]
        nxt[-1] = obs[-1]  # only used when the last row is a terminal: value never bootstraps
        # The step preceding a dropped truncation step closes its episode as a timeout.
        new_tout = np.zeros(n, dtype=bool)
        prev = np.flatnonzero(no_successor) - 1
        prev = prev[(prev >= 0) & ~ends[np.maximum(prev, 0)]]
        new_tout[prev] = True
        meta["dropped_steps"] = int(meta.get("dropped_steps", 0)) + int(no_successor.sum())
        if not keep.any():
            raise DatasetError(
                "observations: every step is the last of its episode, so no step has a "
                "successor; pass next_observations"
            )
        return cls(
            observations=obs[keep],
            actions=acts[keep],
            rewards=rews[keep],
            next_observations=nxt[keep],
            terminals=term[keep],
            timeouts=new_tout[keep],
            env_id=env_id,
            metadata=meta,
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, dtypes, lengths and finiteness; raise :class:`DatasetError` if wrong."""
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                value = _as_array(name, value)
                setattr(self, name, value)
        n = self.observations.shape[0] if self.observations.ndim > 0 else 0
        if n == 0:
            raise DatasetError("observations: the dataset is empty")
        if self.observations.ndim < 2:
            raise DatasetError(
                f"observations: expected shape [N, *obs_shape], got {self.observations.shape}"
            )
        for name in _FIELDS[1:]:
            _check_len(name, getattr(self, name), n)
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"next_observations: shape {self.next_observations.shape} does not match "
                f"observations {self.observations.shape}"
            )
        for name in ("observations", "next_observations"):
            arr = getattr(self, name)
            if arr.dtype == np.uint8:
                continue
            if not np.issubdtype(arr.dtype, np.floating):
                raise DatasetError(
                    f"{name}: expected a float (or uint8 image) dtype, got {arr.dtype}"
                )
            if arr.dtype != np.float32:
                setattr(self, name, arr.astype(np.float32))
        if self.next_observations.dtype != self.observations.dtype:
            raise DatasetError(
                f"next_observations: dtype {self.next_observations.dtype} does not match "
                f"observations ({self.observations.dtype})"
            )
        if np.issubdtype(self.actions.dtype, np.integer):
            if self.actions.ndim != 1:
                raise DatasetError(
                    f"actions: discrete actions must have shape [N], got {self.actions.shape}"
                )
            if (self.actions < 0).any():
                raise DatasetError("actions: discrete actions must be non-negative indices")
            self.actions = self.actions.astype(np.int64, copy=False)
        elif np.issubdtype(self.actions.dtype, np.floating):
            if self.actions.ndim != 2:
                raise DatasetError(
                    f"actions: continuous actions must have shape [N, act_dim], "
                    f"got {self.actions.shape}"
                )
            self.actions = self.actions.astype(np.float32, copy=False)
        else:
            raise DatasetError(
                f"actions: expected a float or integer dtype, got {self.actions.dtype}"
            )
        if self.rewards.ndim != 1:
            raise DatasetError(f"rewards: expected shape [N], got {self.rewards.shape}")
        if not np.issubdtype(self.rewards.dtype, np.number) or np.iscomplexobj(self.rewards):
            raise DatasetError(f"rewards: expected a real numeric dtype, got {self.rewards.dtype}")
        self.rewards = self.rewards.astype(np.float32, copy=False)
        for name in ("terminals", "timeouts"):
            arr = getattr(self, name)
            if arr.ndim != 1:
                raise DatasetError(f"{name}: expected shape [N], got {arr.shape}")
            if arr.dtype != bool:
                if not np.isin(arr, (0, 1)).all():
                    raise DatasetError(f"{name}: expected booleans (0/1), got other values")
                setattr(self, name, arr.astype(bool))
        for name in ("observations", "actions", "rewards", "next_observations"):
            arr = getattr(self, name)
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr).reshape(n, -1).all(axis=1))[0])
                raise DatasetError(f"{name}: contains NaN or inf (first at row {bad})")

    def check_action_space(self, low: np.ndarray | float, high: np.ndarray | float) -> None:
        """Raise :class:`DatasetError` if a continuous action lies outside ``[low, high]``.

        A small tolerance (1e-5, relative to the range) absorbs float32 rounding of clipped actions.
        For discrete actions, ``high`` is the number of actions (gymnasium's ``Discrete.n``): valid
        indices are ``0 .. high - 1`` and ``low`` is ignored.
        """
        if self.discrete:
            check_action_indices(self.actions, int(np.asarray(high)))
            return
        lo = np.broadcast_to(np.asarray(low, dtype=np.float64), self.actions.shape[1:])
        hi = np.broadcast_to(np.asarray(high, dtype=np.float64), self.actions.shape[1:])
        tol = 1e-5 * np.maximum(hi - lo, 1.0)
        outside = (self.actions < lo - tol) | (self.actions > hi + tol)
        if outside.any():
            row, col = (int(i[0]) for i in np.nonzero(outside))
            raise DatasetError(
                f"actions: value {float(self.actions[row, col]):.4g} at row {row}, dim {col} is "
                f"outside the action space [{lo[col]:.4g}, {hi[col]:.4g}]"
            )

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def discrete(self) -> bool:
        """Whether actions are discrete indices."""
        return bool(np.issubdtype(self.actions.dtype, np.integer))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(int(d) for d in self.observations.shape[1:])

    @property
    def action_dim(self) -> int:
        """Continuous: the action dimension. Discrete: the number of actions seen (max + 1)."""
        if self.discrete:
            return int(self.actions.max()) + 1
        return int(self.actions.shape[1])

    def select(self, mask_or_index: np.ndarray) -> Dataset:
        """A new dataset holding the given rows (a boolean mask or integer indices)."""
        return Dataset(
            **{name: getattr(self, name)[mask_or_index] for name in _FIELDS},
            env_id=self.env_id,
            metadata=dict(self.metadata),
        )

    @staticmethod
    def concatenate(parts: list[Dataset], metadata: Mapping[str, Any] | None = None) -> Dataset:
        """Join datasets end to end (episode structure is preserved: each part ends an episode)."""
        if not parts:
            raise DatasetError("observations: nothing to concatenate")
        arrays = {}
        for name in _FIELDS:
            pieces = [getattr(p, name) for p in parts]
            shapes = {a.shape[1:] for a in pieces}
            dtypes = {a.dtype for a in pieces}
            if len(shapes) > 1 or len(dtypes) > 1:
                raise DatasetError(
                    f"{name}: parts disagree on row shape or dtype "
                    f"({sorted(map(str, shapes))}, {sorted(map(str, dtypes))})"
                )
            arrays[name] = np.concatenate(pieces)
        # The last row of every part closes an episode even if it carried no flag.
        offset = 0
        for p in parts[:-1]:
            offset += len(p)
            if not (arrays["terminals"][offset - 1] or arrays["timeouts"][offset - 1]):
                arrays["timeouts"][offset - 1] = True
        env_ids = {p.env_id for p in parts}
        return Dataset(
            **arrays,
            env_id=parts[0].env_id if len(env_ids) == 1 else None,
            metadata=dict(metadata or {}),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The six transition arrays by name."""
        return {name: getattr(self, name) for name in _FIELDS}

    def fingerprint(self) -> str:
        """A SHA-256 of the six arrays (names, dtypes, shapes and bytes), 16 hex digits: equal
        for equal data whatever file it came from, different for any changed value. Runs and
        checkpoints record it, so that ``--resume`` on other data is refused."""
        return array_digest(self.arrays())


def array_digest(arrays: Mapping[str, np.ndarray], prefix: str = "") -> str:
    """16 hex digits of a SHA-256 over ``prefix`` and each array's name, dtype, shape and bytes,
    in order: what the datasets' ``fingerprint`` methods record."""
    digest = hashlib.sha256(prefix.encode())
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.data.cast("B"))
    return digest.hexdigest()[:16]


def check_action_indices(actions: np.ndarray, num_actions: int) -> None:
    """Raise :class:`DatasetError` if an action index is ``>= num_actions``."""
    if actions.max() >= num_actions:
        raise DatasetError(
            f"actions: index {int(actions.max())} outside the action space of {num_actions} actions"
        )


def _as_array(name: str, value: Any) -> np.ndarray:
    if value is None:
        raise DatasetError(f"{name}: missing")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise DatasetError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object:
        raise DatasetError(f"{name}: cannot be read as a numeric array (ragged or mixed types)")
    return arr


def _flags(name: str, value: Any | None, n: int) -> np.ndarray:
    if value is None:
        return np.zeros(n, dtype=bool)
    arr = _as_array(name, value)
    _check_len(name, arr, n)
    if arr.ndim != 1:
        raise DatasetError(f"{name}: expected shape [N], got {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise DatasetError(f"{name}: expected booleans (0/1), got other values")
        arr = arr.astype(bool)
    return arr.copy()


def _check_len(name: str, arr: np.ndarray, n: int) -> None:
    length = arr.shape[0] if arr.ndim > 0 else 0
    if length != n:
        raise DatasetError(f"{name}: length {length} does not match observations ({n})")
