"""EnsembleMLP (hand-written backward) against E separate ``nn.Sequential`` reference MLPs."""

from __future__ import annotations

import math

import pytest
import torch
from _reference import separate_mlps
from torch import nn

from offrl.nn import EnsembleMLP, TanhGaussianPolicy

IN, OUT, HIDDEN, E, B = 5, 3, (7, 6), 3, 4
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _ensemble(seed: int = 0, ensemble: int = E) -> EnsembleMLP:
    torch.manual_seed(seed)
    return EnsembleMLP(IN, OUT, HIDDEN, ensemble=ensemble).double()


def _grad_layers(mlp: EnsembleMLP) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(dW [E, in, out], db [E, 1, out])`` per layer, read from ``mlp.flat.grad``."""
    assert mlp.flat.grad is not None
    views = EnsembleMLP(IN, OUT, HIDDEN, ensemble=mlp.ensemble).double()
    with torch.no_grad():
        views.flat.copy_(mlp.flat.grad)
    return [(w.detach(), b.detach()) for w, b in views.layers()]


def _ref_linears(ref: nn.Sequential) -> list[nn.Linear]:
    return [m for m in ref if isinstance(m, nn.Linear)]


def _check_member_grads(mlp: EnsembleMLP, refs: list[nn.Sequential], members: list[int]) -> None:
    """Weight gradients of ``members`` equal the references'; every other member's are zero."""
    for (gw, gb), layer in zip(_grad_layers(mlp), range(len(mlp.sizes)), strict=True):
        for e in range(mlp.ensemble):
            if e in members:
                lin = _ref_linears(refs[e])[layer]
                torch.testing.assert_close(gw[e], lin.weight.grad.T, **TOL)
                torch.testing.assert_close(gb[e, 0], lin.bias.grad, **TOL)
            else:
                assert torch.count_nonzero(gw[e]) == 0
                assert torch.count_nonzero(gb[e]) == 0


# ---------------------------------------------------------------------- forward and backward
@pytest.mark.parametrize("shared", [True, False], ids=["shared-input", "per-member-input"])
def test_matches_separate_mlps(shared: bool) -> None:
    mlp = _ensemble() if shared else _ensemble(1)
    refs = separate_mlps(mlp)
    shape = (B, IN) if shared else (E, B, IN)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = mlp(x)
    assert out.shape == (E, B, OUT)
    assert out.dtype == torch.float64
    inputs = [x_ref] * E if shared else list(x_ref)
    ref_out = torch.stack([r(xi) for r, xi in zip(refs, inputs, strict=True)])
    torch.testing.assert_close(out, ref_out, **TOL)

    g = torch.randn(E, B, OUT, dtype=torch.float64)
    (out * g).sum().backward()
    (ref_out * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    _check_member_grads(mlp, refs, members=list(range(E)))


def test_members_differ() -> None:
    """Members are initialised independently (an ensemble of copies would be useless)."""
    out = _ensemble()(torch.randn(B, IN, dtype=torch.float64))
    assert not torch.allclose(out[0], out[1])
    assert not torch.allclose(out[1], out[2])


@pytest.mark.parametrize(
    ("members", "expected"), [(1, [1]), (slice(0, 2), [0, 1]), (slice(1, 3), [1, 2])]
)
@pytest.mark.parametrize("shared", [True, False])
def test_members_slice(members: int | slice, expected: list[int], shared: bool) -> None:
    mlp = _ensemble(2)
    refs = separate_mlps(mlp)
    shape = (B, IN) if shared else (len(expected), B, IN)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = mlp(x, members=members)
    assert out.shape == (len(expected), B, OUT)
    ref_out = torch.stack([refs[e](x_ref if shared else x_ref[k]) for k, e in enumerate(expected)])
    torch.testing.assert_close(out, ref_out, **TOL)
    # The same values as the corresponding rows of a full evaluation.
    if shared:
        torch.testing.assert_close(out, mlp(x.detach())[expected], **TOL)

    g = torch.randn(len(expected), B, OUT, dtype=torch.float64)
    (out * g).sum().backward()
    (ref_out * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    _check_member_grads(mlp, refs, members=expected)


@pytest.mark.parametrize("members", [None, 0])
def test_detach_params_gives_input_grad_only(members: int | None) -> None:
    mlp = _ensemble(3)
    refs = separate_mlps(mlp)
    x = torch.randn(B, IN, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = mlp(x, members=members, detach_params=True)
    chosen = list(range(E)) if members is None else [members]
    ref_out = torch.stack([refs[e](x_ref) for e in chosen])
    torch.testing.assert_close(out, ref_out, **TOL)
    out.sum().backward()
    ref_out.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    assert mlp.flat.grad is None


def test_weight_grad_without_input_grad() -> None:
    """An input that does not require grad still gives the reference weight gradients."""
    mlp = _ensemble(4)
    refs = separate_mlps(mlp)
    x = torch.randn(B, IN, dtype=torch.float64)
    out = mlp(x)
    ref_out = torch.stack([r(x) for r in refs])
    out.pow(2).sum().backward()
    ref_out.pow(2).sum().backward()
    _check_member_grads(mlp, refs, members=list(range(E)))


@pytest.mark.parametrize("detach_params", [False, True])
def test_inplace_weight_update_before_backward_raises(detach_params: bool) -> None:
    mlp = _ensemble(10)
    x = torch.randn(B, IN, dtype=torch.float64, requires_grad=True)
    out = mlp(x, detach_params=detach_params)
    with torch.no_grad():
        mlp.flat.add_(1.0)  # e.g. an optimiser step taken before this loss's backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("shared", [True, False])
def test_generic_autograd_path_matches_fused_node(shared: bool) -> None:
    """The ordinary-autograd path (used for non-ReLU stacks and double backward) computes the
    same function and gradients as the single-node ReLU kernel."""
    from offrl.nn.mlp import _generic_forward

    mlp = _ensemble(5)
    x = torch.randn(*((B, IN) if shared else (E, B, IN)), dtype=torch.float64, requires_grad=True)
    out = mlp(x)
    out_ref = _generic_forward(x, mlp.flat, mlp, None, 0.0, None)
    torch.testing.assert_close(out, out_ref, **TOL)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad((out * g).sum(), (x, mlp.flat))
    gx_ref, gw_ref = torch.autograd.grad((out_ref * g).sum(), (x, mlp.flat))
    torch.testing.assert_close(gx, gx_ref, **TOL)
    torch.testing.assert_close(gw, gw_ref, **TOL)


def test_fused_node_supports_double_backward() -> None:
    mlp = _ensemble(6)
    x = torch.randn(B, IN, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(mlp(x).sum(), x, create_graph=True)
    (ggw,) = torch.autograd.grad(gx.pow(2).sum(), mlp.flat)
    assert torch.isfinite(ggw).all() and ggw.abs().sum() > 0


def test_float32_matches_reference() -> None:
    """The default dtype path agrees with nn.Sequential to float rounding."""
    torch.manual_seed(7)
    mlp = EnsembleMLP(IN, OUT, HIDDEN, ensemble=E)
    refs = separate_mlps(mlp.double())
    mlp = mlp.float()
    x = torch.randn(B, IN)
    ref_out = torch.stack([r.float()(x) for r in refs])
    torch.testing.assert_close(mlp(x), ref_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("members", "shared"), [(None, True), (None, False), (slice(1, 2), True), (1, False)]
)
def test_gradcheck(members: int | slice | None, shared: bool) -> None:
    torch.manual_seed(8)
    mlp = EnsembleMLP(3, 2, (4, 3), ensemble=2).double()
    n_members = 2 if members is None else 1
    x = torch.randn(*((3, 3) if shared else (n_members, 3, 3)), dtype=torch.float64)
    x.requires_grad_(True)
    flat = mlp.flat.detach().clone().requires_grad_(True)

    def f(x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(
            mlp, {"flat": flat}, (x,), {"members": members}
        )
        return out

    assert torch.autograd.gradcheck(f, (x, flat))


# ---------------------------------------------------------------------- initialisation
def test_initialisation_bounds_match_nn_linear() -> None:
    torch.manual_seed(9)
    mlp = EnsembleMLP(17, 6, (256, 256), ensemble=4).requires_grad_(False)
    for (w, b), (fan_in, fan_out) in zip(mlp.layers(), mlp.sizes, strict=True):
        assert w.shape == (4, fan_in, fan_out) and b.shape == (4, 1, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        assert w.abs().max() <= bound and b.abs().max() <= bound
        # Uniform over the whole interval, not a narrower one.
        assert w.abs().max() > 0.95 * bound
        assert abs(float(w.mean())) < 0.05 * bound
        assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound
    assert mlp.flat.numel() == sum(4 * (i * o + o) for i, o in mlp.sizes)


def test_tanh_gaussian_n_samples_equal_repeated_states() -> None:
    """``sample(obs, n=k)`` is ``sample(obs.repeat(k, 1))`` from one network pass."""
    torch.manual_seed(0)
    pi = TanhGaussianPolicy(5, 3, (32, 32))
    obs = torch.randn(7, 5)
    a1, lp1 = pi.sample(obs, torch.Generator().manual_seed(3), n=4)
    a2, lp2 = pi.sample(obs.repeat(4, 1), torch.Generator().manual_seed(3))
    assert a1.shape == (28, 3) and lp1.shape == (28,)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(lp1, lp2)


@pytest.mark.parametrize("members", [None, slice(1, 3)])
def test_double_backward_equals_the_generic_path(members: slice | None) -> None:
    """Second-order gradients (EDAC's penalty differentiates dQ/da by the weights) through the
    single-node kernel equal those of the ordinary-autograd stack, with and without a member
    subset, for the input and the weight gradient alike."""
    from offrl.nn.mlp import _generic_forward

    mlp = _ensemble(8)
    x = torch.randn(B, IN, dtype=torch.float64, requires_grad=True)

    def second_order(out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gx, gw = torch.autograd.grad(out.pow(2).sum(), (x, mlp.flat), create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum() + gw.pow(2).sum(), (x, mlp.flat))

    ours = second_order(mlp(x, members=members))
    ref = second_order(_generic_forward(x, mlp.flat, mlp, members, 0.0, None))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL)
        assert a.abs().sum() > 0
