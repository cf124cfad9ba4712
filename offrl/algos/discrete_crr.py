"""Discrete CRR -- Wang, Novikov, Zolna et al., "Critic Regularized Regression", NeurIPS 2020,
for discrete actions.

As :mod:`offrl.algos.crr`, with the expectations over actions exact instead of sampled: the
critic bootstraps on the target policy's expected target value, and the actor is behaviour
cloning filtered by the advantage

    critic:  y = r + gamma (1 - done) sum_a' pi'(a'|s') Q'(s', a'),   loss 0.5 (Q(s, a) - y)^2
    actor:   max E[ f(A(s, a)) log pi(a | s) ],
             A(s, a) = Q(s, a) - sum_a' pi(a'|s) Q(s, a')  ("mean")  or  - max_a' Q(s, a')  ("max"),
             f(A) = min(exp(A / beta), 20)  ("exp")  or  1[A > 0]  ("binary")

Defaults: beta 1, weights ``exp`` clipped at 20, Adam lr 1e-4 for both networks, targets of the
critic and the policy copied every 500 updates, batch 32 (Tianshou's ``DiscreteCRR`` and
``atari_crr.py``). One difference from Tianshou: the weights are constants for the actor's
gradient, as in the paper. Tianshou's are not: the actor loss reaches the critic through
``A(s, a)`` and the actor also through the baseline's ``pi(a'|s)``. With ``weight_gradient=True``
and ``target_copy="before_update"`` (Tianshou copies CRR's targets before computing the
update's targets), offrl's update is Tianshou's, step for step, once one line of Tianshou's is
mended: its actor loss broadcasts ``[B, 1]`` weights against ``[B]`` log-likelihoods, which
weights every sample by the batch's mean weight (``tests/test_tianshou_same_discrete.py``).

The second seed finds plain CRR weak on Atari and CRR with CQL's penalty far stronger:
:mod:`offrl.algos.discrete_crr_cql` adds it by overriding :meth:`DiscreteCRR.critic_loss`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm, make_optimizer, register
from offrl.algos.discrete import (
    DiscreteConfig,
    action_values,
    copy_due,
    q_network,
    step_and_copy,
)
from offrl.data.sampler import Batch
from offrl.losses import crr_weights, td_target
from offrl.nn import CategoricalPolicy

__all__ = ["DiscreteCRR", "DiscreteCRRConfig"]


@dataclass
class DiscreteCRRConfig(DiscreteConfig):
    """Discrete CRR (Tianshou's Atari defaults)."""

    beta: float = 1.0
    """Temperature of the ``exp`` weights ``exp(A / beta)``."""
    advantage_type: str = "mean"
    """Baseline of the advantage: ``mean`` (the policy's expected Q) or ``max`` (the best Q)."""
    weight_type: str = "exp"
    """Filter ``f(A)``: ``exp`` (``min(exp(A / beta), max_weight)``) or ``binary``
    (``A > 0``)."""
    max_weight: float = 20.0
    """Clip of the ``exp`` weights."""
    weight_gradient: bool = False
    """Let the gradient flow through the ``exp`` weights, as Tianshou's ``DiscreteCRR`` does:
    the actor loss then also trains the critic (through ``Q``) and the actor through the
    ``mean`` baseline, and one backward pass over the sum of the two losses steps both. Off by
    default: the paper's weights are constants."""


@register("discrete_crr")
class DiscreteCRR(Algorithm):
    """Critic Regularized Regression for discrete actions (Wang et al., 2020)."""

    config_class = DiscreteCRRConfig
    config: DiscreteCRRConfig
    action_kinds = ("discrete",)
    observation_kinds = ("vector", "image")

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        if cfg.advantage_type not in ("mean", "max"):
            raise ValueError(f"advantage_type: 'mean' or 'max', not {cfg.advantage_type!r}")
        self.critic, self.critic_target = q_network(spec, cfg, self.device)
        self.actor = CategoricalPolicy(
            spec.obs_shape, spec.action_dim, cfg.torso(spec), **cfg.actor_net()
        ).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.lr)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.lr)

    def critic_loss(
        self, batch: Batch, q_all: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Half the squared TD error of the dataset actions' values (from ``q_all``, ``[B, A]``
        at ``batch.obs``), bootstrapping on the target policy's expected target value."""
        q = action_values(q_all, batch.actions)
        with torch.no_grad():
            probs = torch.softmax(self.actor_target.logits(batch.next_obs), -1)
            next_value = (probs * self.critic_target(batch.next_obs)).sum(-1)
            target = td_target(batch.rewards, batch.dones, next_value, self.config.gamma)
        loss = 0.5 * F.mse_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(
        self, batch: Batch, q_all: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-E[f(A(s, a)) log pi(a | s)]`` with the exact baseline over actions."""
        cfg = self.config
        logits = self.actor.logits(batch.obs)
        coupled = cfg.weight_gradient
        if not coupled:
            q_all = q_all.detach()
        if cfg.advantage_type == "mean":
            probs = torch.softmax(logits if coupled else logits.detach(), -1)
            baseline = (probs * q_all).sum(-1)
        else:
            baseline = q_all.amax(-1)
        advantage = action_values(q_all, batch.actions) - baseline
        weights = crr_weights(advantage, cfg.weight_type, cfg.beta, cfg.max_weight, not coupled)
        loss = (weights * F.cross_entropy(logits, batch.actions, reduction="none")).mean()
        return loss, {"actor_loss": loss.detach(), "adv_weight_mean": weights.detach().mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        pairs = [(self.critic_target, self.critic), (self.actor_target, self.actor)]
        copy_due(self, pairs, "before_update")
        q_all = self.critic(batch.obs)
        critic_loss, info = self.critic_loss(batch, q_all)
        actor_loss, actor_info = self.actor_loss(batch, q_all)
        steps: list[tuple[torch.optim.Optimizer | list[torch.optim.Optimizer], torch.Tensor]]
        if self.config.weight_gradient:  # Tianshou's: one backward pass through both losses
            steps = [([self.critic_optim, self.actor_optim], critic_loss + actor_loss)]
        else:
            steps = [(self.critic_optim, critic_loss), (self.actor_optim, actor_loss)]
        step_and_copy(self, steps, pairs)
        return {**info, **actor_info}

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)
