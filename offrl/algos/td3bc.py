"""TD3+BC -- Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021.

TD3 with one change to the actor loss: a behaviour-cloning term, with the Q term scaled by
``lambda = alpha / mean|Q(s, pi(s))|`` so that ``alpha`` means the same on every task:

    actor:   max_pi  lambda * Q1(s, pi(s)) - (pi(s) - a)^2
    critic:  min_Q   sum_i (Q_i(s, a) - y)^2,
             y = r + gamma (1 - done) min_i Q'_i(s', clip(pi'(s') + clip(eps, -c, c), -1, 1))

Observation normalisation (on by default in offrl's trainer) is part of the paper's recipe.
Defaults are the paper's Table 3: alpha 2.5, policy noise 0.2, noise clip 0.5, policy delay 2,
tau 0.005, lr 3e-4 for both networks, batch 256, hidden (256, 256).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register, soft_update
from offrl.data.sampler import Batch
from offrl.losses import ensemble_td_loss, td_target
from offrl.nn import DeterministicPolicy, EnsembleCritic


@dataclass
class TD3BCConfig(AlgoConfig):
    """TD3+BC hyperparameters (paper defaults)."""

    alpha: float = 2.5
    """Weight of the Q term relative to behaviour cloning (lambda = alpha / mean |Q|)."""
    actor_lr: float = 3e-4
    """Actor Adam learning rate."""
    critic_lr: float = 3e-4
    """Critic Adam learning rate."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (in the unit action box)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_freq: int = 2
    """Actor and target updates happen every ``policy_freq`` critic updates."""
    num_critics: int = 2
    """Size of the critic ensemble (TD3's clipped double Q uses 2)."""
    explore_noise: float = 0.1
    """Std of the Gaussian noise added to the policy's action when collecting data online
    (``offrl finetune``; TD3's exploration noise, in the unit action box)."""


@register("td3bc")
class TD3BC(Algorithm):
    """TD3+BC (Fujimoto & Gu, 2021)."""

    config_class = TD3BCConfig
    config: TD3BCConfig

    def build(self) -> None:
        cfg = self.config
        self.actor, self.critic = self.networks()
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)

    def networks(self) -> tuple[DeterministicPolicy, EnsembleCritic]:
        """The actor and the critic ensemble, on the algorithm's device."""
        cfg, spec = self.config, self.spec
        actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net())
        actor.to(self.device)
        critic = EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, **cfg.critic_net()
        )
        return actor, critic.to(self.device)

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """Clipped double-Q target with target policy smoothing: ``[B]``."""
        cfg = self.config
        noise = (
            torch.randn(batch.actions.shape, generator=self.generator, device=self.device)
            .mul_(cfg.policy_noise)
            .clamp_(-cfg.noise_clip, cfg.noise_clip)
        )
        next_actions = (self.actor_target(batch.next_obs) + noise).clamp_(-1.0, 1.0)
        return td_target(
            batch.rewards, batch.dones, self.next_value(batch, next_actions), cfg.gamma
        )

    def next_value(self, batch: Batch, next_actions: torch.Tensor) -> torch.Tensor:
        """``min_i Q'_i(s', a')`` at the smoothed target actions ``a'``: ``[B]``."""
        return self.critic_target(batch.next_obs, next_actions).amin(0)  # [N, B] -> [B]

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over critics of the mean squared TD error."""
        target = self.td_target(batch)
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-lambda * Q1(s, pi(s)) + (pi(s) - a)^2``, lambda = alpha / mean |Q1|."""
        pi = self.actor(batch.obs)
        # Only dQ/da flows to the actor; the critic's weights are constants here.
        q = self.critic(batch.obs, pi, members=0, detach_params=True)[0]
        lmbda = self.config.alpha / q.abs().mean().detach()
        bc = F.mse_loss(pi, batch.actions)
        loss = -lmbda * q.mean() + bc
        return loss, {"actor_loss": loss.detach(), "bc_loss": bc.detach()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        loss, info = self.critic_loss(batch)
        self.optimize(self.critic_optim, loss)
        if (self.num_updates + 1) % self.config.policy_freq == 0:
            actor_loss, actor_info = self.actor_loss(batch)
            self.optimize(self.actor_optim, actor_loss)
            soft_update(self.actor_target, self.actor, self.config.tau)
            soft_update(self.critic_target, self.critic, self.config.tau)
            info.update(actor_info)
        return dict(info)

    def graph_cycle(self) -> int | None:
        # The actor and targets update every policy_freq-th step; nothing else varies.
        return self.config.policy_freq

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """``pi(s) + N(0, explore_noise^2)``, clipped to the action box (TD3's exploration):
        data collection when fine-tuning online (``offrl finetune``)."""

        def draw(x: torch.Tensor) -> torch.Tensor:
            a = self.actor(x)
            noise = torch.randn(a.shape, generator=self.generator, device=a.device)
            return a + self.config.explore_noise * noise

        return self.explore_with(draw, obs)
