"""Policies and critics built on :class:`~offrl.nn.mlp.EnsembleMLP`.

All continuous policies act in the unit box ``[-1, 1]^act_dim``; ``Algorithm.act`` maps actions
to the environment's bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offrl.nn.mlp import EnsembleMLP

__all__ = ["DeterministicPolicy", "GaussianPolicy", "EnsembleCritic"]


class DeterministicPolicy(nn.Module):
    """``a = tanh(MLP(s))`` (TD3, TD3+BC, deterministic BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, obs_dim] -> [B, act_dim]`` in ``[-1, 1]``."""
        return torch.tanh(self.net(obs)[0])


class GaussianPolicy(nn.Module):
    """A diagonal Gaussian with state-dependent mean ``tanh(mu(s))`` and log-std (Gaussian BC).

    The mean is squashed into the unit box so that the deterministic action is always valid; the
    log-std is clamped to ``[log_std_min, log_std_max]`` for numerical stability.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim, 2 * act_dim, hidden)
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """The action distribution at ``obs``."""
        mu, log_std = self.net(obs)[0].split(self.act_dim, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return torch.distributions.Normal(torch.tanh(mu), log_std.exp())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (deterministic acting)."""
        mu = self.net(obs)[0][..., : self.act_dim]
        return torch.tanh(mu)


class EnsembleCritic(nn.Module):
    """``N`` Q-functions ``Q_i(s, a)`` evaluated together: ``[B, obs], [B, act] -> [N, B]``."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), num_critics: int = 2
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim + act_dim, 1, hidden, ensemble=num_critics)
        self.num_critics = num_critics

    def forward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        members: slice | int | None = None,
        detach_params: bool = False,
    ) -> torch.Tensor:
        """Q-values ``[N', B]``.

        ``members`` selects a subset of critics; ``detach_params`` gives dQ/da only.
        """
        x = torch.cat([obs, actions], dim=-1)
        return self.net(x, members=members, detach_params=detach_params).squeeze(-1)
