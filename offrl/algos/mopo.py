"""MOPO: Model-based Offline Policy Optimization (Yu et al., 2020, NeurIPS).

SAC on batches that mix the dataset with rollouts of a learned dynamics ensemble
(:mod:`offrl.algos.model_based`), whose rewards are penalised by the model's uncertainty:

    r~(s, a) = r^(s, a) - lambda * max_i || Sigma_i(s, a) ||_F

the largest norm of the predicted standard deviation over all the ensemble's members (the
paper's section 4.3, "max aleatoric"; the official code's ``penalty_learned_var``, and
OfflineRL-Kit's ``uncertainty_mode="aleatoric"``; the norm covers the reward's dimension too).

Defaults are OfflineRL-Kit's ``run_mopo.py`` (the reference whose README reports MOPO's D4RL
scores): SAC with actor lr 1e-4, critic lr 3e-4, temperature lr 1e-4, two hidden layers of 256,
batch 256, real ratio 0.05, rollouts of 50,000 states every 1,000 updates kept for 5 rollouts.
The per-task horizon h and penalty lambda (Kit's ``run_mopo.py`` docstring, D4RL v2) are
:data:`PAPER_DEFAULTS`, applied by :meth:`MOPOConfig.for_task`; the plain defaults are the
script's (h = 1, lambda = 2.5). Kit clamps the temperature at 1 and orders its SAC update
critic-then-actor; offrl's SAC does neither (:mod:`offrl.algos.sac`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from offrl.algos.base import register
from offrl.algos.model_based import ModelBasedConfig, ModelRollouts, UsesModel, task_defaults
from offrl.algos.sac import SAC, SACConfig
from offrl.data.sampler import Batch
from offrl.losses import max_std_penalty

PAPER_DEFAULTS: dict[str, dict[str, float]] = {
    "halfcheetah-medium": {"rollout_length": 5, "penalty_coef": 0.5},
    "hopper-medium": {"rollout_length": 5, "penalty_coef": 5.0},
    "walker2d-medium": {"rollout_length": 5, "penalty_coef": 0.5},
    "halfcheetah-medium-replay": {"rollout_length": 5, "penalty_coef": 0.5},
    "hopper-medium-replay": {"rollout_length": 5, "penalty_coef": 2.5},
    "walker2d-medium-replay": {"rollout_length": 1, "penalty_coef": 2.5},
    "halfcheetah-medium-expert": {"rollout_length": 5, "penalty_coef": 2.5},
    "hopper-medium-expert": {"rollout_length": 5, "penalty_coef": 5.0},
    "walker2d-medium-expert": {"rollout_length": 1, "penalty_coef": 2.5},
}
"""Per-task ``rollout_length`` (h) and ``penalty_coef`` (lambda): OfflineRL-Kit
``run_example/run_mopo.py``, D4RL v2."""


@dataclass
class MOPOConfig(ModelBasedConfig, SACConfig):
    """MOPO hyperparameters (OfflineRL-Kit's ``run_mopo.py``): SAC's and the model's."""

    actor_lr: float = 1e-4
    """Policy learning rate."""
    alpha_lr: float = 1e-4
    """Entropy-temperature learning rate."""
    rollout_length: int = 1
    """Model steps per rollout, h (the script's default; per task: :meth:`for_task`)."""
    penalty_coef: float = 2.5
    """lambda, the weight of the uncertainty penalty on model rewards (0: no penalty)."""

    paper_defaults: ClassVar[dict[str, dict[str, float]]] = PAPER_DEFAULTS

    @classmethod
    def for_task(cls, name: str, **overrides: Any) -> MOPOConfig:
        """The per-task config of D4RL task ``name`` (any version: ``hopper-medium-v0`` gets
        ``hopper-medium``'s h and lambda), then ``overrides``."""
        return cls(**task_defaults("MOPO", PAPER_DEFAULTS, name), **overrides)


@register("mopo")
class MOPO(UsesModel, SAC):
    """MOPO (Yu et al., 2020): SAC on data and uncertainty-penalised model rollouts."""

    config_class = MOPOConfig
    config: MOPOConfig

    def build(self) -> None:
        super().build()
        self.model = ModelRollouts(
            self.spec, self.config, self.generator, self.device, self.uncertainty_penalty
        )

    def uncertainty_penalty(self, std: torch.Tensor) -> torch.Tensor:
        """``lambda * max_i ||std_i||_2`` over all members, ``[B]``, for ``std [E, B, D]``."""
        return self.config.penalty_coef * max_std_penalty(std)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        return {**super().train_step(self.model.batch(self, batch)), **self.model.metrics()}
