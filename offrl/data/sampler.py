"""Mini-batches drawn from tensors already in memory.

A :class:`Batch` is the one set of field names every algorithm reads. :class:`TensorSampler` packs
a dataset's float fields into **one** ``[N, D]`` tensor, so drawing a batch is one ``randint`` and
one ``index_select`` (about 20 us for 256 rows of a 1M-transition dataset), with the fields as
column views. Any object with ``sample() -> Batch`` and ``state_dict()`` is a :class:`Sampler`:
mixing two sources (offline data with online replay, real with model rollouts) is a sampler that
draws from two samplers and concatenates, with no change to the algorithms.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from offrl.data.dataset import Dataset, EpisodeStructure
from offrl.rng import restore_generator

__all__ = ["Batch", "Sampler", "UniformSampler", "TensorSampler"]


class Batch(NamedTuple):
    """A mini-batch of transitions. Shapes: ``B`` rows.

    ``dones`` is 1.0 only for true terminals; truncations (timeouts) are 0.0 so that TD targets
    bootstrap from ``next_obs``.
    """

    obs: torch.Tensor
    """``[B, *obs_shape]`` (normalised if the trainer normalises observations)."""
    actions: torch.Tensor
    """``[B, act_dim]`` in ``[-1, 1]`` for continuous actions; ``[B]`` int64 for discrete ones."""
    rewards: torch.Tensor
    """``[B]``."""
    next_obs: torch.Tensor
    """``[B, *obs_shape]``."""
    dones: torch.Tensor
    """``[B]`` float: 1.0 where the episode truly ended."""
    rows: torch.Tensor | None = None
    """``[B]`` int64: the rows of the training dataset drawn (``None`` where a batch has no
    fixed dataset behind it, e.g. a replay buffer). Algorithms that keep per-transition
    quantities of the whole dataset (AWR's returns, see ``Algorithm.attach_data``) look them
    up with it."""
    next_actions: torch.Tensor | None = None
    """Like ``actions``: the action the data takes at ``next_obs`` -- the next row's action
    within the same episode; at an episode's last row (terminal or timeout), which has no next
    row, the row's own action. Only samplers asked for it fill it (``TensorSampler(...,
    next_actions=True)``, as the trainer does for algorithms with
    ``Algorithm.needs_next_actions``, e.g. ReBRAC); ``None`` otherwise."""
    returns_to_go: torch.Tensor | None = None
    """``[B]``: the discounted Monte-Carlo return from this transition to the end of its episode
    (truncated episodes do not bootstrap; see :meth:`offrl.data.Dataset.returns_to_go`), in the
    units of ``rewards``. Only samplers asked for it fill it (``TensorSampler(...,
    returns_gamma=gamma)``, as the training loops do for algorithms with
    ``Algorithm.needs_returns_to_go``, e.g. Cal-QL); ``None`` otherwise. Online transitions of
    an episode still running have no return yet: ``nan``."""

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device`` (no copy for tensors already there)."""
        rows, next_actions, rtg = (None if t is None else t.to(device) for t in self[5:8])
        obs, actions, rewards, next_obs, dones = (t.to(device) for t in self[:5])
        return Batch(obs, actions, rewards, next_obs, dones, rows, next_actions, rtg)


class Sampler(Protocol):
    """Anything that yields batches and can save/restore its random state (for exact resume)."""

    def sample(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class UniformSampler:
    """What every in-memory sampler shares: uniform rows with replacement from its own seeded
    generator, the count of batches drawn, and their saved state. A subclass sets ``size`` and
    implements :meth:`rows_batch`."""

    size: int

    def __init__(self, batch_size: int, seed: int, device: str) -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.seed = seed
        self.draws = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.returns: torch.Tensor | None = None

    def keep_returns(self, dataset: EpisodeStructure, gamma: float | None) -> None:
        """With a ``gamma``, keep the dataset's discounted returns-to-go for
        ``Batch.returns_to_go``."""
        if gamma is not None:
            rtg = dataset.returns_to_go(gamma).astype(np.float32)
            self.returns = torch.from_numpy(rtg).to(self.device)

    def sample(self) -> Batch:
        """Draw one batch (uniform, with replacement)."""
        self.draws += 1
        idx = torch.randint(
            0, self.size, (self.batch_size,), generator=self.generator, device=self.device
        )
        return self.rows_batch(idx)

    def rows_batch(self, idx: torch.Tensor) -> Batch:
        """The batch of the given rows (``[n]`` int64 on the sampler's device)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The generator state (restoring it replays the same batch sequence) and the number of
        batches drawn."""
        return {"generator": self.generator.get_state(), "draws": self.draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state (re-seeded from the seed and the number of batches drawn
        if it was saved on another kind of device: see :mod:`offrl.rng`)."""
        self.draws = int(state.get("draws", 0))  # absent from checkpoints before 2026-11-23
        restore_generator(self.generator, state["generator"], self.seed, self.draws)


class TensorSampler(UniformSampler):
    """Uniform sampling with replacement from an in-memory dataset, seeded.

    Args:
        dataset: the transitions (already preprocessed: see :mod:`offrl.data.normalization`).
        batch_size: rows per batch.
        seed: seed of the sampler's own generator (independent of the global torch RNG).
        device: where the tensors live.
        next_actions: also fill ``Batch.next_actions`` (the action of the next row of the same
            episode; at an episode's last row, its own action: see :class:`Batch`).
        returns_gamma: also fill ``Batch.returns_to_go``, discounted by this factor.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 256,
        seed: int = 0,
        device: str = "cpu",
        next_actions: bool = False,
        returns_gamma: float | None = None,
    ) -> None:
        super().__init__(batch_size, seed, device)
        self.size = len(dataset)
        obs = dataset.observations.reshape(self.size, -1)
        self.obs_shape = dataset.obs_shape
        self.discrete = dataset.discrete
        self.packed = dataset.observations.dtype == np.float32 and not self.discrete
        if self.packed:
            cols = [
                obs,
                dataset.actions,
                dataset.rewards[:, None],
                dataset.next_observations.reshape(self.size, -1),
                dataset.terminals[:, None].astype(np.float32),
            ]
            self.data = torch.from_numpy(np.concatenate(cols, axis=1)).to(self.device)
            o, a = obs.shape[1], dataset.actions.shape[1]
            self.splits = (o, a, 1, o, 1)
        else:
            # Images (uint8) or discrete actions cannot share one float tensor: one per field.
            self.fields = [
                torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
                for x in (
                    dataset.observations,
                    dataset.actions,
                    dataset.rewards,
                    dataset.next_observations,
                    dataset.terminals.astype(np.float32),
                )
            ]
        # The row whose action is each row's next action, computed once (None: not asked for).
        self.next_rows: torch.Tensor | None = None
        if next_actions:
            successor = np.arange(1, self.size + 1)
            ends = dataset.episode_ends  # rows with a terminal or timeout, and the last row
            successor[ends] = ends  # no next row in the data: the row's own action
            self.next_rows = torch.from_numpy(successor).to(self.device)
            self.actions = torch.from_numpy(np.ascontiguousarray(dataset.actions)).to(self.device)
        self.keep_returns(dataset, returns_gamma)

    def rows_batch(self, idx: torch.Tensor) -> Batch:
        """The batch of the given rows (``[n]`` int64 on the sampler's device), with the extra
        fields the sampler was asked for."""
        batch = self._select(idx)
        if self.next_rows is not None:
            nxt = self.actions.index_select(0, self.next_rows.index_select(0, idx))
            batch = batch._replace(next_actions=nxt)
        if self.returns is not None:
            batch = batch._replace(returns_to_go=self.returns.index_select(0, idx))
        return batch

    def _select(self, idx: torch.Tensor) -> Batch:
        if self.packed:
            obs, act, rew, nxt, done = self.data.index_select(0, idx).split(self.splits, dim=1)
            shape = (len(idx), *self.obs_shape)
            return Batch(obs.view(shape), act, rew.view(-1), nxt.view(shape), done.view(-1), idx)
        obs, act, rew, nxt, done = (f.index_select(0, idx) for f in self.fields)
        return Batch(obs, act, rew, nxt, done, idx)
