"""COMBO: Conservative Offline Model-Based Policy Optimization (Yu et al., 2021, NeurIPS).

CQL on batches that mix the dataset with model rollouts (:mod:`offrl.algos.model_based`),
without MOPO's reward penalty: the conservative term pushes Q down on the actions of the policy
(and uniform ones) at the batch's states -- model states included, where the model may be
exploited -- and up on the dataset's own state-action pairs only (the paper's eq. 2 with
``rho = d_f`` mixing data and model, ``d`` the data). OfflineRL-Kit (``policy/model_based/
combo.py``) follows that split: its "push down" on the mixed batch (``rho_s="mix"``), its "push
up" on the real rows.

Defaults are OfflineRL-Kit's ``run_combo.py``: CQL's loss with weight 5 and temperature 1, 10
action samples per proposal, a fixed weight (no Lagrange), no entropy in the target, three
hidden layers of 256, actor lr 1e-4, critic lr 3e-4, temperature lr 1e-4, real ratio 0.5,
rollouts of h = 5. Per-task h and weight (Kit's docstring): :data:`PAPER_DEFAULTS`,
:meth:`COMBOConfig.for_task`. One difference from Kit: its log-sum-exp runs over the 3 proposals
of each repeated row (a ``reshape`` whose result is not assigned) where offrl's CQL takes it over
all ``3 * num_samples`` actions of a state, as the CQL paper (:mod:`offrl.algos.cql`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from offrl.algos.base import register
from offrl.algos.cql import Conservative, CQLConfig
from offrl.algos.model_based import ModelBasedConfig, ModelRollouts, UsesModel, task_defaults
from offrl.algos.sac import SAC
from offrl.data.sampler import Batch

PAPER_DEFAULTS: dict[str, dict[str, float]] = {
    "halfcheetah-medium": {"rollout_length": 5, "cql_alpha": 0.5},
    "hopper-medium": {"rollout_length": 5, "cql_alpha": 5.0},
    "walker2d-medium": {"rollout_length": 1, "cql_alpha": 5.0},
    "halfcheetah-medium-replay": {"rollout_length": 5, "cql_alpha": 0.5},
    "hopper-medium-replay": {"rollout_length": 5, "cql_alpha": 0.5},
    "walker2d-medium-replay": {"rollout_length": 1, "cql_alpha": 0.5},
    "halfcheetah-medium-expert": {"rollout_length": 5, "cql_alpha": 5.0},
    "hopper-medium-expert": {"rollout_length": 5, "cql_alpha": 5.0},
    "walker2d-medium-expert": {"rollout_length": 1, "cql_alpha": 5.0},
}
"""Per-task ``rollout_length`` (h) and ``cql_alpha`` (the conservative weight): OfflineRL-Kit
``run_example/run_combo.py``, D4RL v2."""


@dataclass
class COMBOConfig(ModelBasedConfig, CQLConfig):
    """COMBO hyperparameters (OfflineRL-Kit's ``run_combo.py``): CQL's and the model's."""

    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the policy and the critics."""
    cql_alpha: float = 5.0
    """Weight of the conservative term (Kit ``--cql-weight``)."""
    actor_lr: float = 1e-4
    """Policy learning rate."""
    alpha_lr: float = 1e-4
    """Entropy-temperature learning rate."""
    real_ratio: float = 0.5
    """Fraction of each batch drawn from the dataset."""
    rollout_length: int = 5
    """Model steps per rollout, h."""

    paper_defaults: ClassVar[dict[str, dict[str, float]]] = PAPER_DEFAULTS

    @classmethod
    def for_task(cls, name: str, **overrides: Any) -> COMBOConfig:
        """The per-task config of D4RL task ``name`` (any version), then ``overrides``."""
        return cls(**task_defaults("COMBO", PAPER_DEFAULTS, name), **overrides)


@register("combo")
class COMBO(UsesModel, SAC):
    """COMBO (Yu et al., 2021): CQL's conservative critic (:class:`~offrl.algos.cql.
    Conservative`) on data and model rollouts, pushed up on the data only."""

    config_class = COMBOConfig
    config: COMBOConfig

    def build(self) -> None:
        self.conservative = Conservative(self.config, self.device)
        super().build()
        self.model = ModelRollouts(self.spec, self.config, self.generator, self.device)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CQL's loss, its pushed-up term on the dataset's rows only (the batch's first
        ``data_batch_size()``)."""
        return self.conservative.critic_loss(self, batch, push_up_rows=self.data_batch_size())

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        info = super().train_step(self.model.batch(self, batch))
        self.conservative.lagrange_step(self, info)
        return {**info, **self.model.metrics()}
