"""The shared loss functions of :mod:`offrl.losses`, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from offrl.losses import advantage_weights, conservative_penalty, expectile_loss


def test_expectile_loss_by_hand() -> None:
    diff = torch.tensor([2.0, -1.0])
    # tau = 0.7: 0.7 * 4 for the positive residual, 0.3 * 1 for the negative one; mean of two.
    assert float(expectile_loss(diff, 0.7)) == pytest.approx((0.7 * 4 + 0.3 * 1) / 2)
    # tau = 0.5 is half the mean squared error.
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(0.5 * (4 + 1) / 2)


def test_advantage_weights_by_hand() -> None:
    adv = torch.tensor([0.0, 1.0, 10.0], requires_grad=True)
    w = advantage_weights(adv, beta=2.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(2.0), 100.0])  # exp(20) is clipped
    assert not w.requires_grad


def test_conservative_penalty_by_hand() -> None:
    # Two critics, M = 2 sampled actions, B = 2 states.
    q_sampled = torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[0.0, 2.0], [0.0, 2.0]]])  # [N, M, B]
    log_density = torch.tensor([[0.0, -1.0], [1.0, -1.0]])  # [M, B]
    q_data = torch.tensor([[0.5, 1.0], [0.0, 0.0]])  # [N, B]
    out = conservative_penalty(q_sampled, log_density, q_data)
    # critic 0: state 0 logsumexp(1 - 0, 3 - 1) = log(e + e^2), state 1 logsumexp(1, 1) = 1 + log 2
    c0 = ((math.log(math.e + math.e**2) - 0.5) + (1 + math.log(2) - 1.0)) / 2
    # critic 1: state 0 logsumexp(0, -1), state 1 logsumexp(3, 3) = 3 + log 2
    c1 = (math.log(1 + math.exp(-1)) + 3 + math.log(2)) / 2
    assert out.tolist() == pytest.approx([c0, c1])
    # Temperature T: T * logsumexp(x / T); a low temperature approaches the max.
    cold = conservative_penalty(q_sampled, log_density, q_data, temperature=0.01)
    assert cold.tolist() == pytest.approx([((2 - 0.5) + (1 - 1)) / 2, (0 + 3) / 2], abs=0.01)


def test_conservative_penalty_gradient_pushes_down_sampled_up_data() -> None:
    q_sampled = torch.zeros(1, 3, 4, requires_grad=True)
    q_data = torch.zeros(1, 4, requires_grad=True)
    conservative_penalty(q_sampled, torch.zeros(3, 4), q_data).sum().backward()
    assert q_sampled.grad is not None and q_data.grad is not None
    # d/dQ_j = softmax weight / B = 1 / (3 * 4); d/dQ_data = -1 / B.
    assert torch.allclose(q_sampled.grad, torch.full((1, 3, 4), 1 / 12))
    assert torch.allclose(q_data.grad, torch.full((1, 4), -1 / 4))


def test_ensemble_td_loss_hand_computed() -> None:
    from offrl.losses import ensemble_td_loss

    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])  # [N=2, B=2]
    y = torch.tensor([1.0, 1.0])
    # critic 0: (0 + 1) / 2 = 0.5; critic 1: (1 + 9) / 2 = 5.0; sum = 5.5
    assert ensemble_td_loss(q, y).item() == pytest.approx(5.5)
