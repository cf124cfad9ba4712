"""IQL -- Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", 2021.

IQL never queries the critic at actions outside the dataset. Three losses, one per network:

    value:  min_V   E[ L2_tau( min_i Q'_i(s, a) - V(s) ) ]           (expectile regression, eq. 5)
    critic: min_Q   E[ (r + gamma (1 - done) V(s') - Q_i(s, a))^2 ]   (eq. 6)
    actor:  max_pi  E[ min(exp(beta (min_i Q'_i(s, a) - V(s))), 100) log pi(a | s) ]   (eq. 7)

Defaults are the paper's MuJoCo locomotion settings (appendix B): expectile 0.7, beta 3.0,
lr 3e-4 everywhere, batch 256, tau 0.005, two hidden layers of 256, rewards divided by the
dataset's return range and multiplied by 1000 (offrl's ``return_range`` reward mode, applied by
the trainer). As in the official code: the policy is a Gaussian with ``tanh``-squashed mean and a
state-independent log-std, the weights are clipped at 100, and the actor's learning rate follows
a cosine decay to zero over the training run (``max_steps``; the paper does not mention the
schedule; we follow the official code, CORL and d3rlpy, which all decay over the run's length).

d3rlpy 2.8.1's IQL has the same losses and makes two other choices: it takes one Adam step on Q
and V together, so Q regresses on ``V(s')`` from *before* this update's value step (offrl, as
the official code, steps V first); and its log-std is ``-5 + 7 sigmoid(p)`` of a free ``p``
(-1.5 at the start) where offrl's, as the official code's, is a free vector clamped to
``[-5, 2]`` (0 at the start). ``tests/test_d3rlpy_same_iql.py`` replays its updates from offrl's
losses with both switched, to float64 rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register, soft_update
from offrl.data.sampler import Batch
from offrl.losses import advantage_weights, ensemble_td_loss, expectile_loss, td_target
from offrl.nn import EnsembleCritic, GaussianPolicy, ValueFunction


@dataclass
class IQLConfig(AlgoConfig):
    """IQL hyperparameters (paper defaults for MuJoCo locomotion)."""

    expectile: float = 0.7
    """Expectile tau of the value regression (0.5 = mean; 0.9 for AntMaze in the paper)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights (10.0 for AntMaze in the paper)."""
    max_weight: float = 100.0
    """Clip of the exponentiated advantage weights."""
    actor_lr: float = 3e-4
    """Actor learning rate (cosine-decayed over ``max_steps``)."""
    critic_lr: float = 3e-4
    """Q-function learning rate."""
    value_lr: float = 3e-4
    """Value-function learning rate."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    num_critics: int = 2
    """Critics in the clipped double-Q ensemble."""
    max_steps: int | None = None
    """Length of the actor's cosine learning-rate schedule: ``None`` is the training run's
    length (the trainer's ``steps``; 1M, the paper's budget, outside the trainer), 0 disables."""
    reward_mode: str = "return_range"
    """The trainer's reward transform: ``return_range`` is the paper's locomotion recipe."""

    def for_run(self, steps: int) -> IQLConfig:
        """``max_steps=None`` becomes the run's ``steps``: the schedule spans the run."""
        return replace(self, max_steps=steps) if self.max_steps is None else self


@register("iql")
class IQL(Algorithm):
    """Implicit Q-Learning (Kostrikov et al., 2021)."""

    config_class = IQLConfig
    config: IQLConfig

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
        self.value = ValueFunction(spec.obs_dim, cfg.hidden, **cfg.critic_net()).to(self.device)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)
        self.value_optim = make_optimizer(self.value.parameters(), cfg.value_lr)
        horizon = 1_000_000 if cfg.max_steps is None else cfg.max_steps
        self.actor_schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optim, horizon)
            if horizon
            else None
        )

    def value_loss(
        self, batch: Batch, target_q: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Expectile regression of V(s) towards ``target_q`` = min_i Q'_i(s, a)."""
        v = self.value(batch.obs)[0]
        loss = expectile_loss(target_q - v, self.config.expectile)
        return loss, {"value_loss": loss.detach(), "v_mean": v.detach().mean()}

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD regression of every Q_i towards r + gamma V(s')."""
        with torch.no_grad():
            target = td_target(
                batch.rewards, batch.dones, self.value(batch.next_obs)[0], self.config.gamma
            )
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(
        self, batch: Batch, target_q: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Advantage-weighted log-likelihood of the dataset actions (A = target_q - V(s))."""
        with torch.no_grad():
            adv = target_q - self.value(batch.obs)[0]  # with the value just updated
        weights = advantage_weights(adv, self.config.beta, self.config.max_weight)
        log_prob = self.actor.distribution(batch.obs).log_prob(batch.actions).sum(-1)
        loss = -(weights * log_prob).mean()
        return loss, {"actor_loss": loss.detach(), "adv_weight_mean": weights.mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        # The target critic does not change until the Polyak step, so min_i Q'_i(s, a) is
        # computed once for the value and actor losses.
        with torch.no_grad():
            target_q = self.critic_target(batch.obs, batch.actions).amin(0)  # [N, B] -> [B]
        info: dict[str, torch.Tensor | float] = {}
        # In the official code's order: V first, then the actor and Q with the updated V.
        value_loss, parts = self.value_loss(batch, target_q)
        self.optimize(self.value_optim, value_loss)
        info.update(parts)
        actor_loss, parts = self.actor_loss(batch, target_q)
        self.optimize(self.actor_optim, actor_loss)
        info.update(parts)
        critic_loss, parts = self.critic_loss(batch)
        self.optimize(self.critic_optim, critic_loss)
        info.update(parts)
        if self.actor_schedule is not None:
            self.actor_schedule.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return info

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """``a ~ pi(.|s)`` clipped to the action box: data collection when fine-tuning online
        (``offrl finetune``), as CORL's and d3rlpy's fine-tuning scripts act."""
        return self.explore_with(lambda x: self.actor.sample(x, self.generator), obs)
