"""Discrete CQL -- Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS 2020 (its Atari experiments: CQL on QR-DQN).

QR-DQN's loss plus the CQL(H) penalty on the Q-values (the quantiles' means), which pushes down
every action's value and up the dataset action's (eq. 4; over discrete actions the log-sum-exp
is exact):

    loss = QR-DQN loss  +  alpha * E_s[ log sum_a exp Q(s, a) - Q(s, a_data) ]

``alpha`` is ``min_q_weight``: 10 by default (Tianshou's ``DiscreteCQL`` and ``atari_cql.py``);
the second seed's Breakout runs use 50 on the full buffer, 20 on 10 % and 10 on 1 %. Everything
else is :class:`~offrl.algos.qrdqn.QRDQN`'s (200 quantiles, lr 1e-4, target every 500 updates,
batch 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offrl.algos.base import register
from offrl.algos.discrete import cql_penalty
from offrl.algos.qrdqn import QRDQN, QRDQNConfig
from offrl.data.sampler import Batch

__all__ = ["DiscreteCQL", "DiscreteCQLConfig"]


@dataclass
class DiscreteCQLConfig(QRDQNConfig):
    """Discrete CQL: QR-DQN's options and the penalty's weight."""

    min_q_weight: float = 10.0
    """Weight alpha of the CQL(H) penalty (Tianshou's default 10)."""


@register("discrete_cql")
class DiscreteCQL(QRDQN):
    """CQL on QR-DQN for discrete actions (Kumar et al., 2020)."""

    config_class = DiscreteCQLConfig
    config: DiscreteCQLConfig

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        quantiles = self.q.quantiles(batch.obs)
        loss, info = self.td_loss(batch, quantiles)
        q = quantiles.mean(-1)  # [B, A]
        penalty = cql_penalty(q, batch.actions)
        info["cql_loss"] = penalty.detach()
        return loss + self.config.min_q_weight * penalty, info
