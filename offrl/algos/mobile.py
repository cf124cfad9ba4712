"""MOBILE: Model-Bellman Inconsistency for offline RL (Sun et al., 2023, ICML).

SAC on batches that mix the dataset with model rollouts (:mod:`offrl.algos.model_based`), whose
critic targets on model transitions are lowered by the model's *Bellman inconsistency*: how much
the backed-up value disagrees across the ensemble's members,

    u(s, a) = Std_i [ E_{s' ~ P_i(s, a)} min_j Q'_j(s', a' ~ pi(s')) ],
    y = r - beta * u(s, a) + gamma (1 - d) min_j Q'_j(s', a'),

estimated, as the official code (``policies/mobile.py``, ``compute_lcb``) and OfflineRL-Kit,
with ``num_penalty_samples`` (10) draws of s' from each elite, the mean over draws per member
and the (unbiased) standard deviation over the elites. Dataset rows get no penalty.

Defaults are the official ``configs/gym/default.py`` and Kit's ``run_mobile.py``: two critics,
no entropy term in the target (``backup_entropy=False``), actor lr 1e-4, critic lr 3e-4,
temperature lr 1e-4, two hidden layers of 256, real ratio 0.05, h = 1, beta = 1.0. Per-task h
and beta (the official per-task configs): :data:`PAPER_DEFAULTS`, :meth:`MOBILEConfig.for_task`.
Both implementations also clip every target at 0 (``torch.clamp(target_q, 0, None)``), valid
only where returns are non-negative (the MuJoCo locomotion tasks); here it is ``target_floor``,
off by default and on (0) in the per-task MuJoCo configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from offrl.algos.base import register
from offrl.algos.model_based import ModelBasedConfig, ModelRollouts, UsesModel, task_defaults
from offrl.algos.sac import SAC, SACConfig
from offrl.data.sampler import Batch
from offrl.losses import bellman_inconsistency

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "halfcheetah-medium": {"rollout_length": 5, "penalty_coef": 0.5},
    "hopper-medium": {"rollout_length": 5, "penalty_coef": 1.5, "alpha_lr": None},
    "walker2d-medium": {"rollout_length": 5, "penalty_coef": 0.5, "model_max_epochs": 30},
    "halfcheetah-medium-replay": {"rollout_length": 5, "penalty_coef": 0.1},
    "hopper-medium-replay": {"rollout_length": 5, "penalty_coef": 0.1, "alpha_lr": None},
    "walker2d-medium-replay": {"rollout_length": 1, "penalty_coef": 0.5},
    "halfcheetah-medium-expert": {"rollout_length": 5, "penalty_coef": 1.0, "real_ratio": 0.5},
    "hopper-medium-expert": {"rollout_length": 5, "penalty_coef": 1.5},
    "walker2d-medium-expert": {"rollout_length": 1, "penalty_coef": 1.5},
}
"""Per-task ``rollout_length`` (h) and ``penalty_coef`` (beta), and the official configs' other
changes: github.com/yihaosun1124/mobile ``configs/gym/*.py``, D4RL v2. ``alpha_lr: None`` stands
for the official ``auto_alpha=False`` (a fixed temperature of 0.2), applied by
:meth:`MOBILEConfig.for_task`."""


@dataclass
class MOBILEConfig(ModelBasedConfig, SACConfig):
    """MOBILE hyperparameters (official ``configs/gym/default.py``): SAC's and the model's."""

    actor_lr: float = 1e-4
    """Policy learning rate."""
    alpha_lr: float = 1e-4
    """Entropy-temperature learning rate."""
    backup_entropy: bool = False
    """Subtract ``alpha log pi(a'|s')`` in the target (off: the official
    ``deterministic_backup``)."""
    rollout_length: int = 1
    """Model steps per rollout, h (per task: :meth:`for_task`)."""
    penalty_coef: float = 1.0
    """beta, the weight of the Bellman inconsistency in model targets."""
    num_penalty_samples: int = 10
    """Draws of s' from each elite for the inconsistency."""
    target_floor: float | None = None
    """Clip every critic target below at this value (the official code: 0, for non-negative
    returns); ``None`` does not clip."""

    paper_defaults: ClassVar[dict[str, dict[str, Any]]] = PAPER_DEFAULTS

    @classmethod
    def for_task(cls, name: str, **overrides: Any) -> MOBILEConfig:
        """The official config of D4RL task ``name`` (any version), then ``overrides``. Tasks
        whose official config turns automatic temperature tuning off get ``alpha_lr`` at the
        smallest value offrl takes and ``init_log_alpha = log 0.2``."""
        values = task_defaults("MOBILE", PAPER_DEFAULTS, name)
        if "alpha_lr" in values and values["alpha_lr"] is None:
            values.update(alpha_lr=1e-12, init_log_alpha=math.log(0.2))
        return cls(**{"target_floor": 0.0, **values, **overrides})


@register("mobile")
class MOBILE(UsesModel, SAC):
    """MOBILE (Sun et al., 2023): SAC on data and model rollouts, model targets lowered by the
    ensemble's Bellman inconsistency."""

    config_class = MOBILEConfig
    config: MOBILEConfig

    def build(self) -> None:
        super().build()
        self.model = ModelRollouts(self.spec, self.config, self.generator, self.device)

    @torch.no_grad()
    def bellman_inconsistency(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``u(s, a)``, ``[B]``: the std over elites of each elite's mean (over
        ``num_penalty_samples`` draws of s') of ``min_j Q'_j(s', a' ~ pi(s'))``."""
        nxt = self.model.dynamics.sample_next_obs(
            obs, actions, self.config.num_penalty_samples, self.generator
        )  # [n, elites, B, obs]
        flat = nxt.reshape(-1, nxt.shape[-1])
        next_a, _ = self.actor.sample(flat, generator=self.generator)
        q = self.critic_target(flat, next_a).amin(0).view(nxt.shape[:-1])  # [n, elites, B]
        return bellman_inconsistency(q)

    def soft_target(self, batch: Batch) -> torch.Tensor:
        """SAC's target with model rewards lowered by ``beta * u(s, a)`` (dataset rows: none),
        clipped below at ``target_floor`` if set."""
        penalty = self.bellman_inconsistency(batch.obs, batch.actions)
        penalty[: self.data_batch_size()] = 0.0
        rewards = batch.rewards - self.config.penalty_coef * penalty
        target = super().soft_target(batch._replace(rewards=rewards))
        floor = self.config.target_floor
        return target if floor is None else target.clamp(min=floor)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        return {**super().train_step(self.model.batch(self, batch)), **self.model.metrics()}
