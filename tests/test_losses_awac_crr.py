"""AWAC / CRR loss pieces against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from offrl.losses import crr_weights, sampled_advantage


def test_sampled_advantage_mean_and_max() -> None:
    q = torch.tensor([1.0, -2.0])
    # m = 3 samples for each of B = 2 states: [m, B].
    q_pi = torch.tensor([[0.0, -1.0], [3.0, -4.0], [0.0, -1.0]])
    # mean baseline: 1 - (0 + 3 + 0) / 3 = 0; -2 - (-1 - 4 - 1) / 3 = 0.
    assert torch.allclose(sampled_advantage(q, q_pi, "mean"), torch.tensor([0.0, 0.0]))
    # max baseline: 1 - 3 = -2; -2 - (-1) = -1.
    assert torch.allclose(sampled_advantage(q, q_pi, "max"), torch.tensor([-2.0, -1.0]))
    with pytest.raises(ValueError, match="baseline"):
        sampled_advantage(q, q_pi, "median")


def test_crr_weights_binary_and_exp() -> None:
    adv = torch.tensor([-1.0, 0.0, 0.5, 10.0], requires_grad=True)
    assert torch.equal(crr_weights(adv, "binary", 1.0, 20.0), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    w = crr_weights(adv, "exp", 2.0, 20.0)  # exp(A / 2), clipped at 20: exp(5) = 148 -> 20
    expected = [math.exp(-0.5), 1.0, math.exp(0.25), 20.0]
    assert torch.allclose(w, torch.tensor(expected))
    assert not w.requires_grad
    with pytest.raises(ValueError, match="weight type"):
        crr_weights(adv, "softmax", 1.0, 20.0)
