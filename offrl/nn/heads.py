"""Output heads: what a network's last layer means.

A head turns the raw output of a torso (an :class:`~offrl.nn.mlp.EnsembleMLP`, possibly over an
encoder) into actions, a distribution or a prediction. Each works on any leading shape
(``[B, out]`` or ``[E, B, out]``), so ensembles and K-seed batches need nothing special, and
each says how wide the torso's output must be (:meth:`in_dim`). The arithmetic lives here once;
the policies in :mod:`offrl.nn.policies` use these heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DeterministicHead",
    "GaussianHead",
    "TanhGaussianHead",
    "CategoricalHead",
    "ProbabilisticHead",
]


class DeterministicHead(nn.Module):
    """``a = tanh(x)``: actions in the unit box."""

    def __init__(self, act_dim: int) -> None:
        super().__init__()
        self.act_dim = act_dim

    def in_dim(self) -> int:
        """Width of the torso output this head reads."""
        return self.act_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


class GaussianHead(nn.Module):
    """A diagonal Gaussian with mean ``tanh(mu)``; log-std from the torso (``[mu, log_std]``)
    or, with ``state_dependent_std=False``, one learned vector; clamped to its bounds."""

    def __init__(
        self,
        act_dim: int,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        state_dependent_std: bool = True,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.state_dependent_std = state_dependent_std
        self.log_std = None if state_dependent_std else nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def in_dim(self) -> int:
        """Width of the torso output this head reads."""
        return 2 * self.act_dim if self.state_dependent_std else self.act_dim

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        if self.state_dependent_std:
            mu, log_std = x.split(self.act_dim, dim=-1)
        else:
            assert self.log_std is not None
            mu, log_std = x, self.log_std.expand_as(x)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return torch.distributions.Normal(torch.tanh(mu), log_std.exp())

    def mode(self, x: torch.Tensor) -> torch.Tensor:
        """The mean action ``tanh(mu)``."""
        return torch.tanh(x[..., : self.act_dim])


def _tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    # log |d tanh(u) / du| = log(1 - tanh(u)^2), computed stably, summed over action dims.
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


class TanhGaussianHead(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mu, sigma)`` from the torso's ``[mu, log_std]`` (SAC's policy),
    with the change-of-variables correction in :meth:`sample` and :meth:`log_prob`."""

    def __init__(self, act_dim: int, log_std_min: float = -20.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def in_dim(self) -> int:
        """Width of the torso output this head reads."""
        return 2 * self.act_dim

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_std)``, the log-std clamped to its bounds."""
        mu, log_std = x.split(self.act_dim, dim=-1)
        return mu, log_std.clamp(self.log_std_min, self.log_std_max)

    @staticmethod
    def sample_from(
        mu: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(tanh(u), log pi)`` for ``u ~ N(mu, exp(log_std))``."""
        std = log_std.exp()
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + std * eps
        # log N(u; mu, std) with (u - mu) / std = eps, minus log|det da/du|.
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.tanh(u), log_prob - _tanh_log_det(u)

    def sample(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(actions, log_prob)`` from the torso output ``x``."""
        return self.sample_from(*self.params(x), generator)

    @staticmethod
    def log_prob_of(mu: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a)`` of actions in ``[-1, 1]`` (clipped just inside)."""
        a = actions.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        u = torch.atanh(a)
        z = (u - mu) * torch.exp(-log_std)
        log_prob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob - _tanh_log_det(u)

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a)`` under the distribution the torso output ``x`` describes."""
        return self.log_prob_of(*self.params(x), actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(mu)``."""
        return torch.tanh(x[..., : self.act_dim])


class CategoricalHead(nn.Module):
    """Logits over ``num_actions`` discrete actions: a ``Categorical``, or the greedy action."""

    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions

    def in_dim(self) -> int:
        """Width of the torso output this head reads."""
        return self.num_actions

    def forward(self, logits: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=logits)

    @staticmethod
    def greedy(logits: torch.Tensor) -> torch.Tensor:
        """The most likely action, ``[...]`` int64."""
        return logits.argmax(-1)


class ProbabilisticHead(nn.Module):
    """A Gaussian prediction ``(mean, log-variance)`` with soft, learned log-variance bounds.

    The torso outputs ``[mean, raw]`` (``2 * out_dim``); the log-variance is

        max - softplus(max - raw),  then  min + softplus(. - min)

    with ``max`` and ``min`` learned per member and output (PETS, Chua et al., 2018, appendix
    A.1; MBPO's and MOPO's dynamics ensembles). Add :meth:`bound_penalty` to the loss
    (``0.01 * (sum max - sum min)`` in MBPO's code) so the bounds tighten.

    Args:
        out_dim: predicted features.
        ensemble: members ``E`` (bounds are ``[E, 1, out_dim]``; use 1 for a single model).
        min_logvar: initial lower bound.
        max_logvar: initial upper bound.
    """

    def __init__(
        self, out_dim: int, ensemble: int = 1, min_logvar: float = -10.0, max_logvar: float = 0.5
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.max_logvar = nn.Parameter(torch.full((ensemble, 1, out_dim), max_logvar))
        self.min_logvar = nn.Parameter(torch.full((ensemble, 1, out_dim), min_logvar))

    def in_dim(self) -> int:
        """Width of the torso output this head reads."""
        return 2 * self.out_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_var)``, each ``[E, B, out_dim]`` for ``x [E, B, 2 * out_dim]``."""
        mean, raw = x.split(self.out_dim, dim=-1)
        log_var = self.max_logvar - F.softplus(self.max_logvar - raw)
        log_var = self.min_logvar + F.softplus(log_var - self.min_logvar)
        return mean, log_var

    def bound_penalty(self, coef: float = 0.01) -> torch.Tensor:
        """``coef * (sum max_logvar - sum min_logvar)``: keeps the learned bounds tight."""
        return coef * (self.max_logvar.sum() - self.min_logvar.sum())

    @staticmethod
    def nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood up to a constant, mean over rows and features:
        ``((mean - y)^2 exp(-log_var) + log_var) / 2``."""
        return 0.5 * ((mean - target).pow(2) * torch.exp(-log_var) + log_var).mean()
