"""Discrete BCQ -- Fujimoto, Conti, Ghavamzadeh & Pineau, "Benchmarking Batch Deep
Reinforcement Learning Algorithms", 2019.

A DQN whose greedy choices are restricted to actions the data makes likely. An imitation head
``G(a | s)`` on the Q-network's torso learns the behaviour policy; only actions with

    G(a | s) / max_a' G(a' | s)  >  tau

may be chosen, in the target (with double-DQN evaluation by the target network) and when acting:

    a*   = argmax_{a : G(a|s') / max G(.|s') > tau} Q(s', a)
    loss = Huber(Q(s, a) - (r + gamma (1 - done) Q'(s', a*)))  +  CE(G(.|s), a)
           + 0.01 * mean(logits^2)

``tau = 0.3`` (the paper's Atari threshold), the logits' penalty 1e-2, Adam lr 6.25e-5, the
target copied every 8000 updates, batch 32 (the paper's and Tianshou's ``atari_bcq.py``). The
imitation head shares the encoder (d3rlpy's ``share_encoder``; the paper's network shares the
convolutions): one network, ``2 A`` outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm, make_optimizer, register
from offrl.algos.discrete import (
    DiscreteConfig,
    action_values,
    copy_due,
    greedy,
    q_network,
    step_and_copy,
)
from offrl.data.sampler import Batch
from offrl.losses import td_target

__all__ = ["DiscreteBCQ", "DiscreteBCQConfig"]


@dataclass
class DiscreteBCQConfig(DiscreteConfig):
    """Discrete BCQ (the paper's Atari settings)."""

    threshold: float = 0.3
    """tau: actions whose imitation probability is below tau times the most likely action's
    are never chosen (0 allows every action: DQN)."""
    imitation_penalty: float = 1e-2
    """Weight of the squared imitation logits in the loss."""
    lr: float = 6.25e-5
    """Adam learning rate (the paper's)."""
    target_update_every: int = 8000
    """Updates between target network copies (the paper's)."""


@register("discrete_bcq")
class DiscreteBCQ(Algorithm):
    """Batch-constrained deep Q-learning for discrete actions (Fujimoto et al., 2019)."""

    config_class = DiscreteBCQConfig
    config: DiscreteBCQConfig
    action_kinds = ("discrete",)
    observation_kinds = ("vector", "image")

    def build(self) -> None:
        cfg = self.config
        self.q, self.q_target = q_network(self.spec, cfg, self.device, extra=self.spec.action_dim)
        self.q_optim = make_optimizer(self.q.parameters(), cfg.lr)

    def allowed(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, A]`` bool: the actions with ``G(a|s) / max G(.|s) >= tau`` (from the imitation
        logits: ``log G(a|s) - log max G = logit_a - max logit``)."""
        log_tau = math.log(self.config.threshold) if self.config.threshold > 0 else -math.inf
        return logits - logits.amax(-1, keepdim=True) >= log_tau

    def logits_penalty(self, logits: torch.Tensor) -> torch.Tensor:
        """The imitation head's regulariser, weighted by ``imitation_penalty``: the mean squared
        logit (the paper's code and Tianshou's)."""
        return logits.pow(2).mean()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        cfg = self.config
        copy_due(self, [(self.q_target, self.q)], "before_update")
        q_all, logits = self.q.outputs(batch.obs)
        q = action_values(q_all[..., 0], batch.actions)
        with torch.no_grad():
            next_q, next_logits = self.q.outputs(batch.next_obs)
            best = greedy(next_q[..., 0], self.allowed(next_logits))
            next_value = action_values(self.q_target(batch.next_obs), best)
            target = td_target(batch.rewards, batch.dones, next_value, cfg.gamma)
        q_loss = F.smooth_l1_loss(q, target)
        imitation_loss = F.cross_entropy(logits, batch.actions)
        penalty = self.logits_penalty(logits)
        loss = q_loss + imitation_loss + cfg.imitation_penalty * penalty
        step_and_copy(self, [(self.q_optim, loss)], [(self.q_target, self.q)])
        return {
            "q_loss": q_loss.detach(),
            "imitation_loss": imitation_loss.detach(),
            "logits_penalty": penalty.detach(),
            "q_mean": q.detach().mean(),
        }

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        q, logits = self.q.outputs(obs)
        return greedy(q[..., 0], self.allowed(logits))
