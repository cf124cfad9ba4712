"""Encoders and heads compose with the ensemble MLP on every device, with ordinary autograd."""

from __future__ import annotations

import pytest
import torch
from _devices import DEVICES

from offrl.nn import EnsembleMLP
from offrl.nn.encoders import MINATAR_CNN, CNNEncoder, DictEncoder
from offrl.nn.heads import (
    CategoricalHead,
    GaussianHead,
    ProbabilisticHead,
    TanhGaussianHead,
)


@pytest.mark.parametrize("device", DEVICES)
def test_cnn_encoder_torso_and_categorical_head_train_end_to_end(device: str) -> None:
    """Stacked 84x84 uint8 frames -> Nature CNN -> MLP -> logits: every parameter gets a
    gradient from a cross-entropy loss, and a few steps fit a fixed labelling."""
    torch.manual_seed(0)
    enc = CNNEncoder((4, 84, 84)).to(device)
    torso = EnsembleMLP(enc.out_dim, 6, (64,)).to(device)
    head = CategoricalHead(6)
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, device=device)
    labels = torch.arange(8, device=device) % 6
    params = [*enc.parameters(), *torso.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(30):
        dist = head(torso(enc(frames))[0])
        loss = -dist.log_prob(labels).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert head.greedy(torso(enc(frames))[0]).shape == (8,)


def test_cnn_scales_bytes_and_rejects_flat_shapes() -> None:
    enc = CNNEncoder((3, 10, 10), features=16, convs=MINATAR_CNN)
    x = torch.randint(0, 256, (2, 3, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(enc(x), enc(x.float() / 255.0))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        CNNEncoder((17,))


def test_dict_and_tuple_encoders_concatenate_parts_in_key_order() -> None:
    enc = DictEncoder(
        {"pixels": (3, 10, 10), "state": (5,)},
        encoders={"pixels": CNNEncoder((3, 10, 10), 8, MINATAR_CNN)},
    )
    obs = {"state": torch.randn(4, 5), "pixels": torch.rand(4, 3, 10, 10)}
    out = enc(obs)
    assert out.shape == (4, 8 + 5) and enc.out_dim == 13
    torch.testing.assert_close(out[:, 8:], obs["state"])  # the vector part as it is
    with pytest.raises(KeyError, match="state"):
        enc({"pixels": obs["pixels"]})
    tup = DictEncoder([(2,), (3,)])
    parts = (torch.randn(4, 2), torch.randn(4, 3))
    torch.testing.assert_close(tup(parts), torch.cat(parts, -1))
    with pytest.raises(ValueError, match="2 parts"):
        tup(parts[:1])


def test_probabilistic_head_bounds_are_soft_and_learned() -> None:
    head = ProbabilisticHead(3, ensemble=2, min_logvar=-4.0, max_logvar=0.5)
    raw = torch.linspace(-50, 50, 2 * 5 * 6).view(2, 5, 6).requires_grad_(True)
    mean, log_var = head(raw)
    assert mean.shape == log_var.shape == (2, 5, 3)
    # Within the bounds up to softplus(min - max) = 0.011, the second softplus's overshoot.
    assert (log_var >= -4.0).all() and (log_var <= 0.5 + 0.012).all()
    torch.testing.assert_close(mean, raw[..., :3])
    loss = ProbabilisticHead.nll(mean, log_var, torch.zeros_like(mean)) + head.bound_penalty()
    loss.backward()
    assert head.max_logvar.grad is not None and head.max_logvar.grad.abs().sum() > 0
    assert head.min_logvar.grad is not None and head.min_logvar.grad.abs().sum() > 0


def test_tanh_gaussian_head_log_prob_matches_its_samples() -> None:
    """``log_prob`` of a sampled action equals the log-probability ``sample`` reported."""
    head = TanhGaussianHead(2)
    x = torch.randn(64, 4, dtype=torch.float64) * 0.5
    gen = torch.Generator().manual_seed(1)
    a, logp = head.sample(x, gen)
    torch.testing.assert_close(head.log_prob(x, a), logp, rtol=1e-6, atol=1e-6)
    g = GaussianHead(2, state_dependent_std=False)
    assert g.in_dim() == 2 and g(torch.zeros(3, 2)).scale.shape == (3, 2)
