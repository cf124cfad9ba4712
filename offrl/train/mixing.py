"""How offline data and online experience share the batches of offline-to-online fine-tuning.

Every rule draws a batch of ``batch_size`` rows from two sources and concatenates them, offline
rows first; neither source is ever modified by sampling (the offline data stays as loaded, the
online buffer holds what the environment returned):

* ``keep``     -- one pool: every row uniform over all offline and online transitions, so the
                  online share grows with the buffer (CORL's and d3rlpy's AWAC / IQL
                  fine-tuning append online transitions to the offline buffer).
* ``drop``     -- online transitions only (the offline data is dropped once there is any).
* ``ratio``    -- a fixed share ``offline_ratio`` of each batch from the offline data, the rest
                  from the online buffer (Cal-QL's and RLPD's 50/50).
* ``anneal``   -- the offline share moves linearly from ``offline_ratio`` to
                  ``final_offline_ratio`` over ``anneal_steps`` environment steps, then stays
                  (TorchRL's offline-to-online recipe anneals the offline share away).
* ``balanced`` -- Balanced Replay (Lee et al., 2021): one prioritised pool, each transition drawn
                  with probability proportional to a learned density ratio ``d_online(s, a) /
                  d_offline(s, a)`` (:class:`BalancedSampler`).

Online transitions are stored raw (:class:`~offrl.data.replay.ReplayBuffer`) and enter a batch
as the offline rows did: observations normalised with the offline statistics, rewards through
the offline run's transform, actions in the unit box.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from offrl.data.normalization import ObsNormalizer
from offrl.data.priority import SumTree
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import Batch, TensorSampler
from offrl.losses import density_ratio_loss
from offrl.nn import EnsembleMLP
from offrl.optim import FlatAdam
from offrl.rng import restore_generator

__all__ = ["MIX_RULES", "OnlineRows", "MixedSampler", "BalancedSampler", "offline_share"]

MixRule = Literal["keep", "drop", "ratio", "anneal", "balanced"]
MIX_RULES: tuple[str, ...] = ("keep", "drop", "ratio", "anneal", "balanced")


class OnlineRows:
    """Rows of an online :class:`ReplayBuffer` as training batches: observations normalised,
    rewards ``reward_a * r + reward_b`` (the offline data's transform), actions in the unit box,
    returns-to-go as the buffer holds them (``nan`` until an episode ends), and the next action
    of the same episode (``num_envs`` environments write interleaved rows)."""

    def __init__(
        self,
        buffer: ReplayBuffer,
        normalizer: ObsNormalizer,
        reward_a: float,
        reward_b: float,
        num_envs: int = 1,
    ) -> None:
        self.buffer = buffer
        self.num_envs = num_envs
        self.normalizer = normalizer
        self.reward_a, self.reward_b = reward_a, reward_b

    def __len__(self) -> int:
        return self.buffer.size

    def batch(self, idx: np.ndarray, device: torch.device) -> Batch:
        """The transitions at buffer positions ``idx``."""
        buf = self.buffer
        unit = buf.unit_actions(idx)
        rewards = buf.rewards[idx] * self.reward_a + self.reward_b
        fields = (
            self.normalizer(buf.obs[idx]),
            unit,
            rewards.astype(np.float32),
            self.normalizer(buf.next_obs[idx]),
            buf.terminals[idx].astype(np.float32),
        )
        obs, actions, rew, nxt, done = (torch.from_numpy(np.ascontiguousarray(f)) for f in fields)
        # Already in the transformed units: the fine-tuning loop sets them at each episode's end.
        rtg = torch.from_numpy(buf.returns_to_go[idx].copy())
        # The data's action at next_obs (ReBRAC's penalty): the next position of the same
        # environment when it continues the episode, else the row's own action (as offline).
        nxt_pos = (idx + self.num_envs) % buf.capacity
        written = nxt_pos < buf.size
        same = written & (buf.episode[nxt_pos] == buf.episode[idx])
        same &= ~(buf.terminals[idx] | buf.timeouts[idx])
        next_actions = torch.from_numpy(np.where(same[:, None], buf.unit_actions(nxt_pos), unit))
        return Batch(obs, actions, rew, nxt, done, None, next_actions, rtg).to(device)


def offline_share(
    rule: str, step: int, offline_ratio: float, final_ratio: float, anneal_steps: int
) -> float:
    """The share of a batch drawn from the offline data at online step ``step`` under the
    fixed-share rules (``ratio``, ``anneal``; ``drop``: 0)."""
    if rule == "drop":
        return 0.0
    if rule == "ratio":
        return offline_ratio
    if rule == "anneal":
        frac = min(1.0, step / anneal_steps) if anneal_steps > 0 else 1.0
        return offline_ratio + (final_ratio - offline_ratio) * frac
    raise ValueError(f"mix: {rule!r} has no fixed share")


class MixedSampler:
    """Batches of offline and online rows under the ``keep``, ``drop``, ``ratio`` and
    ``anneal`` rules (see the module docstring); ``sample(step)`` takes the online step for
    the annealing schedule."""

    def __init__(
        self,
        offline: TensorSampler,
        online: OnlineRows,
        rule: str,
        batch_size: int,
        seed: int,
        offline_ratio: float = 0.5,
        final_offline_ratio: float = 0.0,
        anneal_steps: int = 0,
    ) -> None:
        if rule not in ("keep", "drop", "ratio", "anneal"):
            raise ValueError(f"mix: unknown rule {rule!r} for MixedSampler")
        self.offline, self.online, self.rule = offline, online, rule
        self.batch_size = batch_size
        self.offline_ratio, self.final_offline_ratio = offline_ratio, final_offline_ratio
        self.anneal_steps = anneal_steps
        self.seed = seed
        self.draws = 0
        self.generator = torch.Generator().manual_seed(seed)

    def split(self, step: int) -> int:
        """Rows of the next batch that come from the offline data under a fixed-share rule
        (``drop``, ``ratio``, ``anneal``); all of them while there is no online data."""
        if len(self.online) == 0:
            return self.batch_size
        share = offline_share(
            self.rule, step, self.offline_ratio, self.final_offline_ratio, self.anneal_steps
        )
        return int(round(self.batch_size * share))

    def sample(self, step: int) -> Batch:
        """One batch at online step ``step``: offline rows, then online rows."""
        self.draws += 1
        n_off, n_on, b = self.offline.size, len(self.online), self.batch_size
        if self.rule == "keep" and n_on:  # uniform over the union of both sources' rows
            pool = torch.randint(n_off + n_on, (b,), generator=self.generator)
            off_idx, on_idx = pool[pool < n_off], pool[pool >= n_off] - n_off
        else:
            k = self.split(step)
            off_idx = torch.randint(n_off, (k,), generator=self.generator)
            on_idx = torch.randint(max(n_on, 1), (b - k,), generator=self.generator)
        return _concat(
            self.offline.rows_batch(off_idx.to(self.offline.device)),
            self.online.batch(on_idx.numpy(), self.offline.device),
        )

    def state_dict(self) -> dict[str, Any]:
        """The generator's state and the number of batches drawn."""
        return {"generator": self.generator.get_state(), "draws": self.draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.draws = int(state["draws"])
        restore_generator(self.generator, state["generator"], self.seed, self.draws)


class BalancedSampler:
    """Balanced Replay's prioritised pool (Lee et al., 2021, section 4.1).

    The pool holds the offline rows (positions ``[0, N_off)``) and the online buffer's
    (``N_off + buffer position``). A density-ratio network ``w(s, a) >= 0`` (an MLP with a ReLU
    output; its last bias starts at 1, so every ratio starts at 1) learns ``d_online /
    d_offline`` by :func:`~offrl.losses.density_ratio_loss`, one Adam step per batch on
    ``batch_size`` offline and ``batch_size`` online rows drawn uniformly. Each batch is drawn
    from the pool by priority (stratified, :class:`~offrl.data.priority.SumTree`); the drawn
    rows' priorities then become

        p = w(s, a)^(1 / T) / mean_{offline rows of this step} w^(1 / T),  clipped to [1e-3, 1e3]

    computed before the network's step, as the official code does. New online transitions enter
    with the largest priority written so far; offline rows start at 1. Defaults are the official
    code's (temperature T = 5, the network's learning rate 3e-4, two hidden layers of 256).
    """

    def __init__(
        self,
        offline: TensorSampler,
        online: OnlineRows,
        batch_size: int,
        seed: int,
        temperature: float = 5.0,
        lr: float = 3e-4,
        hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        self.offline, self.online = offline, online
        self.batch_size, self.seed, self.temperature = batch_size, seed, temperature
        self.device = offline.device
        self.n_off = offline.size
        self.tree = SumTree(self.n_off + online.buffer.capacity)
        self.tree.update(np.arange(self.n_off), np.ones(self.n_off))
        self.seen = 0  # online transitions ever added to the tree
        self.draws = 0
        self.generator = torch.Generator().manual_seed(seed)
        obs_dim = int(np.prod(offline.obs_shape))
        act_dim = int(online.buffer.actions.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = EnsembleMLP(obs_dim + act_dim, 1, hidden).to(self.device)
        with torch.no_grad():
            self.net.layers()[-1][1].fill_(1.0)  # w = 1 everywhere at the start
        self.optim = FlatAdam(self.net.parameters(), lr=lr)

    def ratio(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The estimated ``d_online / d_offline`` at normalised ``(s, a)``: ``[B]``."""
        x = torch.cat([obs.reshape(len(obs), -1), actions], dim=-1)
        return torch.relu(self.net(x)[0, :, 0])

    def _add_new_online(self) -> None:
        buf = self.online.buffer
        new = buf.total - self.seen
        if new <= 0:
            return
        pos = (buf.ptr - np.arange(min(new, buf.capacity), 0, -1)) % buf.capacity
        self.tree.update(self.n_off + pos, np.full(len(pos), max(self.tree.max_priority(), 1.0)))
        self.seen = buf.total

    def sample(self, step: int) -> Batch:
        """One prioritised batch (``step`` is unused: the priorities carry the schedule)."""
        del step
        self.draws += 1
        self._add_new_online()
        pool = self.tree.sample(self.batch_size, self.generator)
        is_off = pool < self.n_off
        off_rows, on_rows = pool[is_off], pool[~is_off] - self.n_off
        batch = _concat(
            self.offline.rows_batch(torch.from_numpy(off_rows).to(self.device)),
            self.online.batch(on_rows, self.device),
        )
        # The density network's step on uniform offline and online rows.
        off = self.offline.rows_batch(
            torch.randint(self.n_off, (self.batch_size,), generator=self.generator).to(self.device)
        )
        on_idx = torch.randint(len(self.online), (self.batch_size,), generator=self.generator)
        on = self.online.batch(on_idx.numpy(), self.device)
        w_off, w_on = self.ratio(off.obs, off.actions), self.ratio(on.obs, on.actions)
        with torch.no_grad():  # priorities from the network before its step
            scale = w_off.pow(1.0 / self.temperature).mean() + 1e-10
            w = self.ratio(batch.obs, batch.actions)
            prio = (w.pow(1.0 / self.temperature) / scale).clamp(1e-3, 1e3)
        order = np.concatenate([off_rows, on_rows + self.n_off])
        self.tree.update(order, prio.cpu().double().numpy())
        loss = density_ratio_loss(w_off, w_on)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.last_metrics = {
            "density_loss": float(loss.detach()),
            "density_ratio_offline": float(w_off.detach().mean()),
            "density_ratio_online": float(w_on.detach().mean()),
            "batch_online_share": float((~is_off).mean()),
        }
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The priorities, the density network and its optimiser, the generator's state."""
        return {
            "tree": self.tree.state_dict(),
            "net": self.net.state_dict(),
            "optim": self.optim.state_dict(),
            "seen": self.seen,
            "generator": self.generator.get_state(),
            "draws": self.draws,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.tree.load_state_dict(state["tree"])
        self.net.load_state_dict(state["net"])
        self.optim.load_state_dict(state["optim"])
        self.seen, self.draws = int(state["seen"]), int(state["draws"])
        restore_generator(self.generator, state["generator"], self.seed, self.draws)


def _concat(first: Batch, second: Batch) -> Batch:
    """Rows of ``first`` then ``second`` (optional fields either lacks are dropped)."""
    core = [torch.cat([a, b]) for a, b in zip(first[:5], second[:5], strict=True)]
    extra = [
        None if a is None or b is None else torch.cat([a, b])
        for a, b in zip(first[5:], second[5:], strict=True)
    ]
    return Batch(*core, *extra)
