"""Behaviour cloning: supervised regression of dataset actions on observations.

Deterministic BC minimises ``||pi(s) - a||^2``; Gaussian BC maximises ``log N(a | mu(s), sigma(s))``
and acts with the mean. Defaults follow the TD3+BC paper's BC baseline (Fujimoto & Gu, 2021,
appendix: lr 3e-4, batch 256, two hidden layers of 256).

Discrete actions: a categorical policy trained by cross-entropy, acting with its most likely
action -- the imitation baseline of the second seed's Atari tables (Agarwal et al., 2020;
Fujimoto et al., 2019, "Benchmarking Batch Deep RL Algorithms"). Image observations (stacked
``[C, H, W]`` frames) go through a CNN (:class:`~offrl.nn.CategoricalPolicy`).

``deterministic`` is d3rlpy 2.8.1's ``BCConfig(policy_type="deterministic")`` (whose defaults
are lr 1e-3, batch 100). d3rlpy's ``"stochastic"`` has offrl's Gaussian policy but another
loss: the squared error of one reparameterised sample ``clip(mu + sigma eps, -1, 1)`` to the
dataset's action, not its likelihood (and log-std bounds [-4, 15], not [-5, 2]).
``tests/test_d3rlpy_same_bc.py`` replays both from offrl's code, d3rlpy's loss switched in for
the second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offrl.algos.base import AlgoConfig, Algorithm, EnvSpec, make_optimizer, register
from offrl.data.sampler import Batch
from offrl.errors import IncompatibleDataError
from offrl.nn import CategoricalPolicy, DeterministicPolicy, GaussianPolicy


@dataclass
class BCConfig(AlgoConfig):
    """Behaviour cloning."""

    policy: str = "deterministic"
    """Continuous actions: ``"deterministic"`` (MSE) or ``"gaussian"`` (negative
    log-likelihood). Discrete actions always take a categorical policy (cross-entropy)."""
    lr: float = 3e-4
    """Adam learning rate."""


@register("bc")
class BC(Algorithm):
    """Behaviour cloning (deterministic or Gaussian policy)."""

    config_class = BCConfig
    config: BCConfig
    action_kinds = ("continuous", "discrete")
    observation_kinds = ("vector", "image")

    @classmethod
    def check_spec(cls, spec: EnvSpec) -> None:
        super().check_spec(spec)
        if len(spec.obs_shape) != 1 and not spec.discrete:
            raise IncompatibleDataError(
                f"observations: bc reads image observations {tuple(spec.obs_shape)} with "
                "discrete actions only"
            )

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        self.actor: DeterministicPolicy | GaussianPolicy | CategoricalPolicy
        if spec.discrete:
            self.actor = CategoricalPolicy(
                spec.obs_shape, spec.action_dim, cfg.hidden, **cfg.actor_net()
            )
        elif cfg.policy == "deterministic":
            self.actor = DeterministicPolicy(
                spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net()
            )
        elif cfg.policy == "gaussian":
            self.actor = GaussianPolicy(
                spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net()
            )
        else:
            raise ValueError(f"policy: unknown {cfg.policy!r} (deterministic or gaussian)")
        self.actor.to(self.device)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.lr)

    def bc_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE to the dataset action, or its negative log-likelihood (cross-entropy for
        discrete actions)."""
        if isinstance(self.actor, CategoricalPolicy):
            logits = self.actor.logits(batch.obs)
            loss = torch.nn.functional.cross_entropy(logits, batch.actions.long())
            accuracy = (logits.argmax(-1) == batch.actions).float().mean()
            return loss, {"bc_loss": loss.detach(), "accuracy": accuracy}
        if isinstance(self.actor, GaussianPolicy):
            dist = self.actor.distribution(batch.obs)
            loss = -dist.log_prob(batch.actions).sum(-1).mean()
        else:
            loss = (self.actor(batch.obs) - batch.actions).pow(2).mean()
        return loss, {"bc_loss": loss.detach()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        loss, info = self.bc_loss(batch)
        self.optimize(self.actor_optim, loss)
        return dict(info)

    def graph_cycle(self) -> int | None:
        # Every update the same; torch.distributions checks its arguments on the host.
        return 1 if self.config.policy == "deterministic" and not self.spec.discrete else None

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)
