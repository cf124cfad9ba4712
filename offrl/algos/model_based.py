"""The part every model-based algorithm shares: a learned model, rollouts, and mixed batches.

MOPO, COMBO and MOBILE (:mod:`offrl.algos.mopo`, :mod:`~offrl.algos.combo`,
:mod:`~offrl.algos.mobile`) are an unchanged model-free learner (SAC, CQL) on batches that mix
the dataset with short rollouts of a learned dynamics model. As in OfflineRL-Kit
(``offlinerlkit/policy_trainer/mb_policy_trainer.py``, ``policy/model_based/*.py``) and MBPO /
MOPO before it:

* the model (:class:`~offrl.dynamics.model.DynamicsEnsemble`) is trained once on the prepared
  training data -- normalised observations, actions in ``[-1, 1]``, transformed rewards, so it
  predicts in the learner's own units -- and kept as an artifact reused by every run on the same
  data (:func:`~offrl.dynamics.fit.fit_or_load`);
* every ``rollout_freq`` updates (from the first), ``rollout_batch_size`` dataset states are
  rolled out for ``rollout_length`` steps with the current policy's *sampled* actions; each step
  draws each transition from a random elite; rollouts stop where the environment's termination
  rule (raw units) -- or, where none is known, the model's learned termination -- ends them;
* the transitions go into a first-in-first-out model buffer of ``rollout_batch_size *
  rollout_length * model_retain_epochs`` transitions (the last few rollouts);
* each update's batch is ``int(batch_size * real_ratio)`` dataset rows (the trainer's sampler
  draws them: :meth:`ModelRollouts.data_batch_size`) followed by model rows drawn uniformly
  from the buffer, ``batch_size`` in all.

The buffer is part of the algorithm's state (saved in checkpoints), so a resumed run continues
with the rollouts it had; the model's weights are too, so resuming never retrains it.
Everything random draws from the algorithm's own generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from offrl.algos.base import Component, EnvSpec, task_name
from offrl.data.dataset import Dataset
from offrl.data.registry import report_progress
from offrl.data.sampler import Batch
from offrl.dynamics import DynamicsConfig, FittedModel, fit_or_load
from offrl.dynamics.termination import termination_fn

if TYPE_CHECKING:
    from offrl.algos.sac import SAC

__all__ = ["ModelBasedConfig", "ModelRollouts", "UsesModel", "task_defaults"]

ROLLOUT_CHUNK = 10_000
"""Start states rolled out together (bounds the memory of a 50k-state rollout)."""


@dataclass
class ModelBasedConfig(DynamicsConfig):
    """Options of the model rollouts and the batch mix (OfflineRL-Kit's run scripts), with the
    model's own (:class:`~offrl.dynamics.fit.DynamicsConfig`). A mix-in of the model-based
    algorithms' configs."""

    rollout_length: int = 5
    """Model steps per rollout, h (per task: see each algorithm's ``for_task``)."""
    rollout_batch_size: int = 50_000
    """Dataset states each rollout starts from."""
    rollout_freq: int = 1000
    """Updates between rollouts."""
    model_retain_epochs: int = 5
    """Rollouts the model buffer keeps: its size is ``rollout_batch_size * rollout_length *
    model_retain_epochs``."""
    real_ratio: float = 0.05
    """Fraction of each batch drawn from the dataset (the rest from the model buffer)."""
    model_dir: str | None = None
    """Where trained models are kept (``None``: ``data_dir()/models``)."""


def task_defaults(algo: str, table: dict[str, dict[str, float]], name: str) -> dict[str, Any]:
    """The row of a per-task ``table`` (keys ``env-level``) for D4RL task ``name``, whatever its
    version and case (``"hopper-medium-v0"`` finds ``"hopper-medium"``)."""
    key = task_name(name)
    if key not in table:
        raise KeyError(f"{algo} has no per-task defaults for {name!r}; known: {sorted(table)}")
    return dict(table[key])


class ModelRollouts(Component):
    """The model, its rollouts and its buffer, held by a model-based algorithm as ``.model``.

    The owner is a :class:`~offrl.algos.sac.SAC` (its ``actor`` acts in the rollouts, its
    ``generator`` draws every random number). It calls :meth:`attach` from ``attach_data`` and
    :meth:`batch` at the start of each update. ``reward_penalty(std)``, if given, is subtracted
    from every rollout reward, given the members' predicted standard deviations ``[E, B, obs +
    1]`` (MOPO's uncertainty penalty).
    """

    def __init__(
        self,
        spec: EnvSpec,
        config: ModelBasedConfig,
        generator: torch.Generator,
        device: Any,
        reward_penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.config = config
        self.reward_penalty = reward_penalty
        self.generator = generator
        self.device = torch.device(device)
        self.dynamics = config.ensemble(spec.obs_dim, spec.action_dim).to(self.device)
        self.dynamics.requires_grad_(False)
        capacity = config.rollout_batch_size * config.rollout_length * config.model_retain_epochs
        self.splits = (spec.obs_dim, spec.action_dim, 1, spec.obs_dim, 1)
        self.model_buffer = torch.zeros((capacity, sum(self.splits)), device=self.device)
        # [next row to write, rows filled, rollouts done]: tensors, so checkpoints keep them.
        self.model_buffer_state = torch.zeros(3, dtype=torch.int64)
        # The last rollout's transitions, mean reward and fraction ended: reported every update.
        self.model_rollout_stats = torch.zeros(3)
        self.fitted: FittedModel | None = None
        self._start_obs: list[torch.Tensor] = []  # the data's states (a list: not saved)
        self._terminal: Any = None

    # ------------------------------------------------------------------ the model
    def attach(self, data: Dataset) -> FittedModel:
        """Train (or load) the model of the prepared training data ``data`` and keep its states
        as rollout starts; returns what the model's training measured."""
        cfg = self.config
        fitted = fit_or_load(
            data,
            DynamicsConfig.of(cfg),
            progress=report_progress,
            root=Path(cfg.model_dir) if cfg.model_dir is not None else None,
        )
        self.dynamics.load_state_dict(fitted.model.state_dict())
        self.fitted = fitted
        obs = torch.as_tensor(data.observations.reshape(len(data), -1), device=self.device)
        self._start_obs = [obs]
        self._terminal = termination_fn(data.env_id)
        return fitted

    def run_info(self) -> dict[str, Any]:
        """``{"dynamics_model": FittedModel.summary()}`` once attached (``{}`` before)."""
        return {} if self.fitted is None else {"dynamics_model": self.fitted.summary()}

    def done(self, algo: SAC, next_obs: torch.Tensor, learned: torch.Tensor) -> torch.Tensor:
        """Whether each predicted ``next_obs`` (normalised) ends its episode: the environment's
        rule on the raw state where one is known, else the model's learned termination."""
        if self._terminal is None:
            return learned
        return self._terminal(next_obs * algo.obs_std + algo.obs_mean)

    # ------------------------------------------------------------------ rollouts
    @torch.no_grad()
    def rollout(self, algo: SAC) -> None:
        """Roll the model out from ``rollout_batch_size`` dataset states for
        ``rollout_length`` steps with the current policy; add the transitions to the buffer."""
        if not self._start_obs:
            raise RuntimeError("the model-based algorithm has no data: attach_data first")
        cfg, data = self.config, self._start_obs[0]
        starts = torch.randint(
            0, data.shape[0], (cfg.rollout_batch_size,), generator=self.generator,
            device=self.device,
        )  # fmt: skip
        added, rewards, ended = 0, 0.0, 0
        for first in range(0, cfg.rollout_batch_size, ROLLOUT_CHUNK):
            obs = data[starts[first : first + ROLLOUT_CHUNK]]
            for _ in range(cfg.rollout_length):
                actions, _ = algo.actor.sample(obs, generator=self.generator)
                next_obs, reward, learned_done, std = self.dynamics.step(
                    obs, actions, self.generator
                )
                if self.reward_penalty is not None:
                    reward = reward - self.reward_penalty(std)
                done = self.done(algo, next_obs, learned_done)
                self.add(obs, actions, reward, next_obs, done)
                added += obs.shape[0]
                rewards += float(reward.sum())
                ended += int(done.sum())
                obs = next_obs[~done]
                if obs.shape[0] == 0:
                    break
        self.model_buffer_state[2] += 1
        self.model_rollout_stats.copy_(
            torch.tensor([added, rewards / max(added, 1), ended / max(added, 1)])
        )

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        """Append transitions to the ring buffer, overwriting the oldest when full."""
        rows = torch.cat(
            [obs, actions, rewards[:, None], next_obs, dones[:, None].to(obs.dtype)], 1
        )
        capacity = self.model_buffer.shape[0]
        ptr, size = int(self.model_buffer_state[0]), int(self.model_buffer_state[1])
        n = rows.shape[0]
        idx = (torch.arange(n, device=self.device) + ptr) % capacity
        self.model_buffer.index_copy_(0, idx, rows[-capacity:] if n > capacity else rows)
        self.model_buffer_state[0] = (ptr + n) % capacity
        self.model_buffer_state[1] = min(size + n, capacity)

    # ------------------------------------------------------------------ batches
    def data_batch_size(self, batch_size: int) -> int:
        """Dataset rows per batch: ``int(batch_size * real_ratio)``, at least one."""
        return max(1, int(batch_size * self.config.real_ratio))

    @torch.no_grad()
    def model_return(
        self, algo: SAC, obs: torch.Tensor, horizon: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the model predicts the policy earns: the undiscounted sums of the model's
        rewards, raw and with the algorithm's reward penalty (MOPO's ``r - lambda u``; the same
        as raw where there is none), over ``horizon`` steps of the deterministic policy from each
        of the (normalised) states ``obs``, each transition drawn from a random elite, stopping
        where an episode ends: two ``[B]`` tensors. Set beside the policy's real return they
        show how much the policy exploits the model: MOPO's penalty exists to keep the penalised
        sum, the return of the MDP it optimises, at or below the real one (its Theorem 4.2)."""
        raw = torch.zeros(obs.shape[0], device=self.device)
        penalised = torch.zeros_like(raw)
        alive = torch.ones(obs.shape[0], dtype=torch.bool, device=self.device)
        for _ in range(horizon):
            next_obs, reward, learned_done, std = self.dynamics.step(
                obs, algo.policy(obs), self.generator
            )
            penalty = self.reward_penalty(std) if self.reward_penalty is not None else 0.0
            raw += torch.where(alive, reward, torch.zeros_like(reward))
            penalised += torch.where(alive, reward - penalty, torch.zeros_like(reward))
            alive &= ~self.done(algo, next_obs, learned_done)
            obs = next_obs
        return raw, penalised

    def metrics(self) -> dict[str, float]:
        """The last rollout's size, mean reward and fraction of ended transitions."""
        added, reward, done = self.model_rollout_stats.tolist()
        return {"rollout_transitions": added, "rollout_reward": reward, "rollout_done": done}

    def batch(self, algo: SAC, data: Batch) -> Batch:
        """The update's batch: ``data`` (the dataset rows) followed by model rows up to
        ``batch_size``; a rollout first if one is due."""
        if algo.num_updates % self.config.rollout_freq == 0:
            self.rollout(algo)
        size = int(self.model_buffer_state[1])
        n = algo.config.batch_size - data.obs.shape[0]
        if n <= 0 or size == 0:
            return data
        idx = torch.randint(0, size, (n,), generator=self.generator, device=self.device)
        obs, act, rew, nxt, done = self.model_buffer.index_select(0, idx).split(self.splits, 1)
        return Batch(
            torch.cat([data.obs, obs]),
            torch.cat([data.actions, act]),
            torch.cat([data.rewards, rew.view(-1)]),
            torch.cat([data.next_obs, nxt]),
            torch.cat([data.dones, done.view(-1)]),
        )


class UsesModel:
    """The data hooks of an algorithm that holds :class:`ModelRollouts` as ``.model`` (a mix-in
    before its :class:`~offrl.algos.sac.SAC`: ``class MOPO(UsesModel, SAC)``): the model is
    trained or loaded when the data is attached, the trainer's sampler draws only the batch's
    dataset rows, and ``final.json`` records the model."""

    model: ModelRollouts
    config: Any

    def attach_data(self, dataset: Dataset) -> None:
        """Train (or reuse) the dynamics model of the prepared training data."""
        self.model.attach(dataset)

    def data_batch_size(self) -> int:
        """``int(batch_size * real_ratio)``: the rest of each batch comes from the model."""
        return self.model.data_batch_size(self.config.batch_size)

    def run_info(self) -> dict[str, Any]:
        """The dynamics model's summary (:meth:`ModelRollouts.run_info`)."""
        return self.model.run_info()

    @classmethod
    def can_explore(cls) -> bool:
        """``False``: the model is trained on a dataset, so online training (which has none)
        refuses a model-based algorithm before it starts."""
        return False
