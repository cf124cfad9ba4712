"""SAC -- Haarnoja, Zhou, Abbeel & Levine, "Soft Actor-Critic", 2018, with automatic entropy
tuning from Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018.

Maximum-entropy actor-critic with a squashed Gaussian policy and clipped double Q:

    critic:  min_Q  sum_i (Q_i(s, a) - y)^2,
             y = r + gamma (1 - done) [ min_i Q'_i(s', a') - alpha log pi(a'|s') ],  a' ~ pi(s')
    actor:   min_pi E_s[ alpha log pi(a|s) - min_i Q_i(s, a) ],  a ~ pi(s) (reparameterised)
    alpha:   min  -log alpha * E[ log pi(a|s) + target_entropy ],  target_entropy = -act_dim

SAC is offrl's online learner (``offrl online``: behaviour policies for the dataset factory) and
the base of the SAC-derived offline methods: CQL overrides :meth:`SAC.critic_loss`, and SAC run
on offline data is the naive baseline whose Q-values diverge. Defaults are the second paper's
Table 1: lr 3e-4 for all three, batch 256, two hidden layers of 256, tau 0.005, gamma 0.99, one
target update per gradient step; the initial temperature is 1 as in the authors' softlearning.

Two recipe choices, each a choice among published implementations rather than the paper's
maths. Order: one update steps the actor, then the temperature on the actor's sample, then the
critic (its target sampled from the updated actor), then the targets. The temperature loss is
softlearning's, in ``log alpha``; the paper's eq. 18 is the same expression in ``alpha``
(``-alpha (log pi + target_entropy)``, whose gradient in ``log alpha`` is alpha times larger).
d3rlpy 2.8.1's SAC makes the other two choices (critic first, then the temperature, then the
actor with the new temperature; the loss in alpha) and is otherwise the same update:
``tests/test_d3rlpy_same_sac.py`` replays its updates from offrl's losses with those two
switched, to float64 rounding, and offrl's own update against its sub-steps in offrl's order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register, soft_update
from offrl.data.sampler import Batch
from offrl.losses import ensemble_gradient_similarity, ensemble_td_loss, td_target
from offrl.nn import EnsembleCritic, TanhGaussianPolicy

Info = dict[str, torch.Tensor]


@dataclass
class SACConfig(AlgoConfig):
    """SAC hyperparameters (Haarnoja et al., 2018b, Table 1)."""

    actor_lr: float = 3e-4
    """Policy learning rate."""
    critic_lr: float = 3e-4
    """Q-function learning rate."""
    alpha_lr: float = 3e-4
    """Entropy-temperature learning rate."""
    init_log_alpha: float = 0.0
    """Initial log of the entropy temperature alpha (softlearning starts at alpha = 1)."""
    target_entropy: float | None = None
    """Entropy target of the automatic tuning; ``None`` is the paper's ``-act_dim``."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    num_critics: int = 2
    """Critics in the ensemble; the target takes the minimum over all of them (SAC-N)."""
    backup_entropy: bool = True
    """Subtract ``alpha log pi(a'|s')`` in the target (the soft Bellman backup)."""


class Scalar(nn.Module):
    """One learnable number (a log-temperature), a module so that checkpoints and optimisers
    keep pointing at the same parameter."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        return self.value


@register("sac")
class SAC(Algorithm):
    """Soft Actor-Critic with automatic entropy tuning (Haarnoja et al., 2018)."""

    config_class = SACConfig
    config: SACConfig

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        self.actor = self.make_actor().to(self.device)
        self.critic = self.make_critic().to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = Scalar(cfg.init_log_alpha).to(self.device)
        self.target_entropy = (
            -float(spec.action_dim) if cfg.target_entropy is None else cfg.target_entropy
        )
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)
        self.alpha_optim = make_optimizer(self.log_alpha.parameters(), cfg.alpha_lr)

    def make_actor(self) -> TanhGaussianPolicy:
        """The policy network (a squashed Gaussian)."""
        cfg, spec = self.config, self.spec
        return TanhGaussianPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net())

    def make_critic(self) -> EnsembleCritic:
        """The ``num_critics`` Q-functions."""
        cfg, spec = self.config, self.spec
        return EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, **cfg.critic_net()
        )

    def alpha(self) -> torch.Tensor:
        """The entropy temperature (a constant for the actor and critic losses)."""
        return self.log_alpha().detach().exp()

    @torch.no_grad()
    def soft_target(self, batch: Batch) -> torch.Tensor:
        """``r + gamma (1 - done) [min_i Q'_i(s', a') - alpha log pi(a'|s')]``: ``[B]``."""
        next_a, next_logp = self.actor.sample(batch.next_obs, generator=self.generator)
        q_next = self.critic_target(batch.next_obs, next_a).amin(0)
        if self.config.backup_entropy:
            q_next = q_next - self.alpha() * next_logp
        return td_target(batch.rewards, batch.dones, q_next, self.config.gamma)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Sum over critics of the mean squared soft TD error."""
        q = self.critic(batch.obs, batch.actions)
        loss = ensemble_td_loss(q, self.soft_target(batch))
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """``alpha log pi(a|s) - min_i Q_i(s, a)``; only dQ/da reaches the actor."""
        actions, log_prob = self.actor.sample(batch.obs, generator=self.generator)
        q = self.actor_q(batch.obs, actions)
        loss = (self.alpha() * log_prob - q).mean()
        return loss, {"actor_loss": loss.detach(), "_log_prob": log_prob.detach()}

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The value the actor maximises, ``min_i Q_i(s, a)``: ``[B]``, differentiable in the
        actions only (UWAC overrides it with an uncertainty-weighted value)."""
        return self.critic.min_q(obs, actions)

    def alpha_loss(self, log_prob: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """Automatic entropy tuning towards ``target_entropy``."""
        loss = -(self.log_alpha() * (log_prob + self.target_entropy)).mean()
        return loss, {
            "alpha_loss": loss.detach(),
            "alpha": self.alpha(),
            "entropy": -log_prob.mean(),
        }

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        actor_loss, actor_info = self.actor_loss(batch)
        self.optimize(self.actor_optim, actor_loss)
        alpha_loss, alpha_info = self.alpha_loss(actor_info.pop("_log_prob"))
        self.optimize(self.alpha_optim, alpha_loss)
        critic_loss, critic_info = self.critic_loss(batch)
        self.optimize(self.critic_optim, critic_loss)
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {**actor_info, **alpha_info, **critic_info}

    def gradient_similarity(self, obs: torch.Tensor, actions: torch.Tensor) -> float:
        """Mean pairwise cosine similarity of the critics' action-gradients at ``(obs,
        actions)`` (normalised observations, unit-box actions): the quantity EDAC's diversity
        term lowers (An et al., 2021, section 4). 1 when all critics' gradients point the same
        way, 0 when they are orthogonal on average."""
        n = self.config.num_critics
        with torch.enable_grad():
            a = actions.expand(n, *actions.shape).clone().requires_grad_(True)
            q = self.critic(obs.expand(n, *obs.shape), a, detach_params=True)  # [N, B]
            (grads,) = torch.autograd.grad(q.sum(), a)
        return float(ensemble_gradient_similarity(grads.detach())) / n

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Stochastic actions ``a ~ pi(.|s)`` for raw observations ``[n, obs]`` (online data
        collection), mapped to the action space's bounds."""
        return self.explore_with(lambda x: self.actor.sample(x, generator=self.generator)[0], obs)

    def snapshot_policy(self) -> nn.Module:
        """The squashed-Gaussian actor (what ``offrl dataset pack`` rebuilds)."""
        return self.actor
