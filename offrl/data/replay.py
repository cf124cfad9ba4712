"""A fixed-size replay buffer for online learning that can become an offline dataset.

Transitions are stored in raw environment units (what an offline dataset holds) together with
the episode each belongs to, so that :meth:`ReplayBuffer.to_dataset` can turn any prefix of a
training run into a D4RL-style dataset (``medium-replay``, ``full-replay``) with contiguous
episodes, terminals and timeouts kept apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from offrl.data.dataset import Dataset
from offrl.data.sampler import Batch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions; when full, the oldest are overwritten.

    ``sample`` draws uniformly with a torch generator and returns a :class:`Batch` whose actions
    are mapped to the unit box ``[-1, 1]`` (the algorithms' convention) from the bounds given.
    With ``discrete=True`` actions are ``int64`` indices (``action_dim`` is the number of
    actions; the bounds are ignored) and pass unchanged. Observations are kept in ``obs_dtype``:
    ``uint8`` frames stay bytes, as offline datasets keep them.
    """

    _FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts", "episode")

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        discrete: bool = False,
        obs_dtype: type | np.dtype = np.float32,
    ) -> None:
        self.capacity = int(capacity)
        self.discrete = discrete
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        act_shape = (capacity,) if discrete else (capacity, action_dim)
        self.actions = np.zeros(act_shape, dtype=np.int64 if discrete else np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.terminals = np.zeros(capacity, dtype=bool)
        self.timeouts = np.zeros(capacity, dtype=bool)
        self.episode = np.zeros(capacity, dtype=np.int64)
        self.returns_to_go = np.full(capacity, np.nan, dtype=np.float32)
        """Per transition, the discounted return to its episode's end once the episode has
        ended and someone (the fine-tuning loop) set it with :meth:`set_returns`; ``nan``
        before."""
        self.low = np.asarray(action_low, dtype=np.float32)
        self.high = np.asarray(action_high, dtype=np.float32)
        self.ptr = 0
        self.size = 0
        self.total = 0
        """Transitions ever added (``size`` stops at ``capacity``)."""

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminals: np.ndarray,
        timeouts: np.ndarray,
        episode: np.ndarray,
    ) -> np.ndarray:
        """Append ``n`` transitions (each argument has a leading dimension ``n``); returns the
        ``[n]`` positions they were written to."""
        n = len(rewards)
        idx = (self.ptr + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.next_obs[idx] = next_obs
        self.terminals[idx] = terminals
        self.timeouts[idx] = timeouts
        self.episode[idx] = episode
        self.returns_to_go[idx] = np.nan
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.total += n
        return idx

    def set_returns(self, idx: np.ndarray, returns: np.ndarray) -> None:
        """Record the returns-to-go of the transitions at positions ``idx``."""
        self.returns_to_go[idx] = returns

    def unit_actions(self, idx: np.ndarray) -> np.ndarray:
        """The actions at positions ``idx`` mapped from the bounds to the unit box ``[-1, 1]``
        (the algorithms' convention); discrete indices as they are."""
        if self.discrete:
            return self.actions[idx]
        return 2.0 * (self.actions[idx] - self.low) / (self.high - self.low) - 1.0

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A uniform batch as tensors; actions in the unit box."""
        idx = torch.randint(self.size, (batch_size,), generator=generator).numpy()
        unit = self.unit_actions(idx)
        return Batch(
            torch.from_numpy(self.obs[idx]),
            torch.from_numpy(unit),
            torch.from_numpy(self.rewards[idx]),
            torch.from_numpy(self.next_obs[idx]),
            torch.from_numpy(self.terminals[idx].astype(np.float32)),
        )

    def _order(self) -> np.ndarray:
        """Indices of the stored transitions, oldest first."""
        if self.size < self.capacity:
            return np.arange(self.size)
        return (self.ptr + np.arange(self.capacity)) % self.capacity

    def to_dataset(self, first: int | None = None, env_id: str | None = None) -> Dataset:
        """The stored transitions (or the ``first`` ones added, oldest first) as a dataset.

        Episodes are made contiguous in the order they began (several environments interleave
        in the buffer); an episode still running when the data ends is stored as truncated (a
        timeout), which is what it is.
        """
        order = self._order()
        if first is not None:
            if self.total > self.capacity:
                raise ValueError("the buffer has wrapped: its first transitions are gone")
            order = order[:first]
        ep = self.episode[order]
        order = order[np.argsort(ep, kind="stable")]
        ep = self.episode[order]
        timeouts = self.timeouts[order].copy()
        terminals = self.terminals[order]
        last = np.r_[ep[1:] != ep[:-1], True]  # last stored step of each episode
        timeouts |= last & ~terminals
        return Dataset(
            observations=self.obs[order],
            actions=self.actions[order],
            rewards=self.rewards[order],
            next_observations=self.next_obs[order],
            terminals=terminals.copy(),
            timeouts=timeouts,
            env_id=env_id,
        )

    def state_dict(self) -> dict[str, Any]:
        """The filled part of the buffer as tensors, plus the write position."""
        state: dict[str, Any] = {"ptr": self.ptr, "size": self.size, "total": self.total}
        for name in (*self._FIELDS, "returns_to_go"):
            state[name] = torch.from_numpy(getattr(self, name)[: self.size].copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a buffer of the same shape."""
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"checkpointed buffer holds {size} > capacity {self.capacity}")
        for name in self._FIELDS:
            getattr(self, name)[:size] = state[name].numpy()
        if "returns_to_go" in state:  # absent from buffers saved before 2026-12-06
            self.returns_to_go[:size] = state["returns_to_go"].numpy()
        self.ptr, self.size, self.total = int(state["ptr"]), size, int(state["total"])
