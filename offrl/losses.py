"""Loss functions shared by several algorithms: pure functions of tensors.

Each reads like its equation; the algorithms compose them.
"""

from __future__ import annotations

import torch

__all__ = ["expectile_loss", "advantage_weights", "td_target"]


def td_target(
    rewards: torch.Tensor, dones: torch.Tensor, next_values: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``r + gamma * (1 - done) * V(s')`` -- no bootstrap past a true terminal only."""
    return rewards + gamma * (1.0 - dones) * next_values


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2, ``|tau - 1(u < 0)| * u^2`` averaged (IQL, Kostrikov et al., 2021, eq. 5).

    ``diff = target - prediction``; ``expectile = 0.5`` is the mean squared error, larger values
    push the prediction towards an upper expectile of the target.
    """
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


def advantage_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(beta * A), max_weight)`` -- exponentiated advantages, clipped (AWR, IQL, AWAC).

    ``beta`` is the inverse temperature. Gradients never flow through the weights.
    """
    return torch.exp(beta * advantage.detach()).clamp(max=max_weight)
