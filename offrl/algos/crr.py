"""CRR -- Wang, Novikov, Zolna et al., "Critic Regularized Regression", 2020.

A critic trained by TD learning on the policy's actions, and an actor trained by filtered
behaviour cloning: the log-likelihood of each dataset action weighted by a function of its
advantage under the critic (eqs. 2-4 of the paper):

    critic:  min_Q   sum_i (Q_i(s, a) - y)^2,   y = r + gamma (1 - done) min_i Q'_i(s', a'),
                     a' ~ pi'(. | s')
    actor:   max_pi  E_{s, a ~ D}[ f(A(s, a)) log pi(a | s) ],
             A(s, a) = Q(s, a) - 1/m sum_j Q(s, a_j)   ("mean")   or   - max_j Q(s, a_j)   ("max"),
             a_j ~ pi(. | s),   f(A) = 1[A > 0]   ("binary")   or   min(exp(A / beta), 20)   ("exp")

The paper's critic is distributional (C51-style); like d3rlpy's ``CRR`` and most reproductions we
use a standard scalar critic trained with squared TD errors. Defaults follow d3rlpy's
``CRRConfig`` (which follows the paper's choices): beta 1.0, m = 4 samples, advantage ``mean``,
weights ``exp`` clipped at 20, one critic (ensembles reduce with ``min`` in the target and ``mean``
in the advantage, as d3rlpy), lr 3e-4 for both networks, target networks for the critic *and* the
policy. One departure: d3rlpy copies the targets every 100 steps by default (``hard``); we default
to its ``soft`` option (Polyak, tau 5e-3, every step) like offrl's other algorithms, which also
lets every network move on every update; ``target_update="hard"`` restores d3rlpy's default.
d3rlpy's batch is 100; we keep offrl's 256. The policy is a Gaussian with a state-dependent
log-std (d3rlpy: non-squashed mean; ours is ``tanh``-squashed so the mean is a valid action).
We act with the mean action; d3rlpy's critic-weighted resampling at evaluation is not used.

The update is d3rlpy 2.8.1's, soft and hard targets alike: ``tests/test_d3rlpy_same_crr.py``
replays its updates in offrl's own :meth:`CRR.update` to float64 rounding (the log-std's lower
clamp, -5 here and -20 in d3rlpy, is not reached there). d3rlpy builds its target policy from its
own random initialisation rather than as a copy of the policy (only a hard update makes them
equal), so with ``soft`` targets its target policy starts unrelated to the policy; ours starts
as its copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from offrl.algos.base import (
    AlgoConfig,
    Algorithm,
    hard_update,
    make_optimizer,
    register,
    soft_update,
)
from offrl.data.sampler import Batch
from offrl.losses import crr_weights, ensemble_td_loss, sampled_advantage, td_target
from offrl.nn import EnsembleCritic, GaussianPolicy, sample_actions


@dataclass
class CRRConfig(AlgoConfig):
    """CRR hyperparameters (d3rlpy ``CRRConfig`` defaults)."""

    beta: float = 1.0
    """Temperature of the ``exp`` weights ``exp(A / beta)``."""
    n_action_samples: int = 4
    """Policy samples ``m`` per state in the advantage's baseline."""
    advantage_type: str = "mean"
    """Baseline of the advantage over the ``m`` samples: ``mean`` or ``max``."""
    weight_type: str = "exp"
    """Filter ``f(A)``: ``exp`` (``min(exp(A / beta), max_weight)``) or ``binary`` (``A > 0``)."""
    max_weight: float = 20.0
    """Clip of the ``exp`` weights."""
    actor_lr: float = 3e-4
    """Actor Adam learning rate."""
    critic_lr: float = 3e-4
    """Critic Adam learning rate."""
    num_critics: int = 1
    """Critics in the ensemble (d3rlpy ``n_critics``: 1)."""
    target_update: str = "soft"
    """``soft``: Polyak with ``tau`` every step; ``hard`` (d3rlpy's default): copy every
    ``target_update_interval`` steps."""
    target_update_interval: int = 100
    """Steps between ``hard`` target updates of the critic and the policy (d3rlpy: 100)."""
    tau: float = 5e-3
    """Polyak rate of the ``soft`` target update."""


@register("crr")
class CRR(Algorithm):
    """Critic Regularized Regression (Wang et al., 2020)."""

    config_class = CRRConfig
    config: CRRConfig

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        if cfg.target_update not in ("hard", "soft"):
            raise ValueError(f"target_update must be 'hard' or 'soft', not {cfg.target_update!r}")
        self.actor = GaussianPolicy(
            spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net()
        ).to(self.device)
        self.critic = EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, **cfg.critic_net()
        )
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over critics of the mean squared TD error, bootstrapping with ``a' ~ pi'(s')``."""
        with torch.no_grad():
            dist = self.actor_target.distribution(batch.next_obs)
            next_actions = sample_actions(dist, 1, self.generator)[0]
            next_q = self.critic_target(batch.next_obs, next_actions).amin(0)
            target = td_target(batch.rewards, batch.dones, next_q, self.config.gamma)
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-E[f(A(s, a)) log pi(a | s)]`` with ``A`` from ``m`` policy samples."""
        cfg = self.config
        m, b = cfg.n_action_samples, batch.obs.shape[0]
        dist = self.actor.distribution(batch.obs)
        with torch.no_grad():
            pi_actions = sample_actions(dist, m, self.generator).flatten(0, 1)  # [m*B, act]
            # The dataset action and the m samples in one critic call over (m + 1) * B rows.
            obs = batch.obs.repeat(m + 1, 1)
            q_all = self.critic(obs, torch.cat([batch.actions, pi_actions])).mean(0)
            adv = sampled_advantage(q_all[:b], q_all[b:].view(m, b), cfg.advantage_type)
            weights = crr_weights(adv, cfg.weight_type, cfg.beta, cfg.max_weight)
        log_prob = dist.log_prob(batch.actions).sum(-1)
        loss = -(weights * log_prob).mean()
        return loss, {"actor_loss": loss.detach(), "adv_weight_mean": weights.mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        cfg = self.config
        info: dict[str, torch.Tensor | float] = {}
        for loss_fn, optim in (
            (self.critic_loss, self.critic_optim),
            (self.actor_loss, self.actor_optim),
        ):
            loss, parts = loss_fn(batch)
            self.optimize(optim, loss)
            info.update(parts)
        if cfg.target_update == "soft":
            soft_update(self.critic_target, self.critic, cfg.tau)
            soft_update(self.actor_target, self.actor, cfg.tau)
        elif (self.num_updates + 1) % cfg.target_update_interval == 0:
            hard_update(self.critic_target, self.critic)
            hard_update(self.actor_target, self.actor)
        return info

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)
