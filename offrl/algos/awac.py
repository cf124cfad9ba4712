"""AWAC -- Nair, Gupta, Dalal & Levine, "AWAC: Accelerating Online Reinforcement Learning with
Offline Datasets", 2020.

An off-policy actor-critic whose actor step is weighted maximum likelihood of the dataset actions,
the closed-form solution of a KL-constrained policy improvement (eq. 10 of the paper):

    critic:  min_Q   sum_i (Q_i(s, a) - y)^2,   y = r + gamma (1 - done) min_i Q'_i(s', a'),
                     a' ~ pi(. | s')                                      (policy evaluation, eq. 4)
    actor:   max_pi  E_{s, a ~ D}[ log pi(a | s) exp(A(s, a) / lambda) ],
                     A(s, a) = min_i Q_i(s, a) - min_i Q_i(s, a~),  a~ ~ pi(. | s)

``V(s)`` is estimated with one policy sample, ``Q(s, pi(s))``, as in the official code and
CORL's ``algorithms/offline/awac.py`` (the reference we follow for defaults): lambda 1.0, weights
clipped at ``exp_adv_max = 100`` (not normalised over the batch), lr 3e-4 for actor and critics,
batch 256, tau 5e-3, twin critics with a soft-updated target, no target actor. CORL's actor is a
Gaussian with a state-independent log-std whose sampled actions are clamped to ``[-1, 1]``; its
mean is unsquashed, ours is ``tanh``-squashed (:class:`~offrl.nn.GaussianPolicy`) so that the
deterministic action is always valid. CORL uses three hidden layers of 256 for every network;
we keep offrl's two (``hidden`` is configurable). The paper (appendix) uses lambda 1.0 too.

d3rlpy 2.8.1's AWAC makes four other choices and is otherwise the same update: its critic target
is SAC's (``a' = tanh(u)``, ``u ~ N(mu(s'), sigma)`` around the unsquashed mean, minus
``log pi(a'|s')`` at a fixed temperature 1), its log-std is ``-6 + 6 sigmoid(p)`` rather than
``p`` clamped to ``[-5, 2]``, its weights are normalised over the batch (``B softmax(A /
lambda)``, no clip) and its actor loss sums over the batch. ``tests/test_d3rlpy_same_awac.py``
replays its updates with those four switched, to float64 rounding, and shows each one matters.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register, soft_update
from offrl.data.sampler import Batch
from offrl.losses import advantage_weights, ensemble_td_loss, td_target
from offrl.nn import EnsembleCritic, GaussianPolicy, sample_actions


@dataclass
class AWACConfig(AlgoConfig):
    """AWAC hyperparameters (CORL's ``offline/awac.py`` defaults)."""

    awac_lambda: float = 1.0
    """Temperature lambda of the weights ``exp(A / lambda)`` (CORL ``awac_lambda``)."""
    exp_adv_max: float = 100.0
    """Clip of the exponentiated advantage weights (CORL ``exp_adv_max``)."""
    actor_lr: float = 3e-4
    """Actor Adam learning rate (CORL ``learning_rate``)."""
    critic_lr: float = 3e-4
    """Critic Adam learning rate (CORL ``learning_rate``)."""
    tau: float = 5e-3
    """Polyak rate of the target critics (CORL ``tau``)."""
    num_critics: int = 2
    """Critics in the clipped double-Q ensemble (CORL: 2)."""


@register("awac")
class AWAC(Algorithm):
    """Advantage-Weighted Actor-Critic (Nair et al., 2020)."""

    config_class = AWACConfig
    config: AWACConfig

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        self.actor = GaussianPolicy(
            spec.obs_dim, spec.action_dim, cfg.hidden, state_dependent_std=False, **cfg.actor_net()
        ).to(self.device)
        self.critic = EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, **cfg.critic_net()
        )
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over critics of the mean squared TD error, bootstrapping with ``a' ~ pi(s')``."""
        with torch.no_grad():
            next_actions = sample_actions(
                self.actor.distribution(batch.next_obs), 1, self.generator
            )
            next_q = self.critic_target(batch.next_obs, next_actions[0]).amin(0)
            target = td_target(batch.rewards, batch.dones, next_q, self.config.gamma)
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-E[exp(A / lambda) log pi(a | s)]``, ``A = min_i Q_i(s, a) - min_i Q_i(s, a~)``."""
        dist = self.actor.distribution(batch.obs)
        with torch.no_grad():
            pi_actions = sample_actions(dist, 1, self.generator)[0]
            # Q at the dataset and the sampled actions in one critic call: [N, 2B] -> [2B].
            q_both = self.critic(
                batch.obs.repeat(2, 1), torch.cat([batch.actions, pi_actions])
            ).amin(0)
            q, v = q_both.chunk(2)
            weights = advantage_weights(
                q - v, 1.0 / self.config.awac_lambda, self.config.exp_adv_max
            )
        log_prob = dist.log_prob(batch.actions).sum(-1)
        loss = -(weights * log_prob).mean()
        return loss, {"actor_loss": loss.detach(), "adv_weight_mean": weights.mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        info: dict[str, torch.Tensor | float] = {}
        for loss_fn, optim in (
            (self.critic_loss, self.critic_optim),
            (self.actor_loss, self.actor_optim),
        ):
            loss, parts = loss_fn(batch)
            self.optimize(optim, loss)
            info.update(parts)
        soft_update(self.critic_target, self.critic, self.config.tau)
        return info

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """``a ~ pi(.|s)`` clipped to the action box: data collection when fine-tuning online
        (``offrl finetune``), as CORL's and d3rlpy's fine-tuning scripts act."""
        return self.explore_with(lambda x: self.actor.sample(x, self.generator), obs)
