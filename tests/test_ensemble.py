"""The vectorised critic ensemble (SAC-N, EDAC, UWAC) against N separate networks, its dropout and
twice-differentiable paths, the EDAC diversity term, and the per-dataset presets.

The ensemble is one flat parameter evaluated with one batched matmul per layer; these tests show
it is numerically the same function as N independent ``nn.Linear`` MLPs -- forward, weight
gradients and action-gradients -- for the ensemble sizes the algorithms use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _reference import separate_mlps
from _scripts import load_script
from torch import nn

from offrl.algos import EDAC, EDACConfig, EnvSpec, SACNConfig, UWACConfig
from offrl.data import Dataset
from offrl.data.sampler import TensorSampler
from offrl.losses import ensemble_gradient_similarity
from offrl.nn import EnsembleCritic, EnsembleMLP
from offrl.nn.mlp import _dropout_scale

OBS, ACT, HIDDEN, B = 4, 2, (16, 16, 16), 7
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _critic(n: int, seed: int = 0) -> EnsembleCritic:
    torch.manual_seed(seed)
    return EnsembleCritic(OBS, ACT, HIDDEN, num_critics=n).double()


def _flat_grads(net: nn.Sequential) -> list[torch.Tensor]:
    out = []
    for m in net:
        if isinstance(m, nn.Linear):
            assert m.weight.grad is not None and m.bias.grad is not None
            out += [m.weight.grad.T, m.bias.grad]
    return out


def _member_grads(critic: EnsembleCritic, e: int) -> list[torch.Tensor]:
    grads = EnsembleMLP(OBS + ACT, 1, HIDDEN, ensemble=critic.num_critics).double()
    with torch.no_grad():
        assert critic.net.flat.grad is not None
        grads.flat.copy_(critic.net.flat.grad)
    return [t for w, b in grads.layers() for t in (w[e].detach(), b[e, 0].detach())]


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, OBS, generator=g, dtype=torch.float64)
    actions = torch.rand(B, ACT, generator=g, dtype=torch.float64) * 2 - 1
    return obs, actions


@pytest.mark.parametrize("n", [1, 3, 10])
def test_ensemble_equals_separate_networks(n: int) -> None:
    """Q-values, weight gradients and action-gradients equal N separate nn.Linear critics."""
    critic = _critic(n)
    nets = separate_mlps(critic.net)
    obs, actions = _data()
    a = actions.clone().requires_grad_(True)
    q = critic(obs, a)  # [N, B]
    assert q.shape == (n, B)
    weights = torch.linspace(0.5, 1.5, n * B, dtype=torch.float64).view(n, B)
    (q * weights).sum().backward()
    a_refs = []
    for e, net in enumerate(nets):
        a_ref = actions.clone().requires_grad_(True)
        q_ref = net(torch.cat([obs, a_ref], dim=1))[:, 0]
        torch.testing.assert_close(q[e], q_ref, **TOL)
        (q_ref * weights[e]).sum().backward()
        for got, want in zip(_member_grads(critic, e), _flat_grads(net), strict=True):
            torch.testing.assert_close(got, want, **TOL)
        a_refs.append(a_ref.grad)
    # The shared actions' gradient is the sum over critics of each one's dQ_i/da.
    torch.testing.assert_close(a.grad, torch.stack(a_refs).sum(0), **TOL)


@pytest.mark.parametrize("n", [3, 10])
@pytest.mark.parametrize("members", [0, slice(1, 3), 2])
def test_members_equal_the_chosen_networks(n: int, members: int | slice) -> None:
    """``members=`` evaluates (and trains) exactly the chosen critics; the others get zero."""
    critic = _critic(n)
    nets = separate_mlps(critic.net)
    chosen = [members] if isinstance(members, int) else list(range(n))[members]
    obs, actions = _data(2)
    q = critic(obs, actions, members=members)
    assert q.shape == (len(chosen), B)
    q.sum().backward()
    for row, e in enumerate(chosen):
        q_ref = nets[e](torch.cat([obs, actions], dim=1))[:, 0]
        torch.testing.assert_close(q[row], q_ref, **TOL)
        q_ref.sum().backward()
        for got, want in zip(_member_grads(critic, e), _flat_grads(nets[e]), strict=True):
            torch.testing.assert_close(got, want, **TOL)
    for e in set(range(n)) - set(chosen):
        assert all(not g.any() for g in _member_grads(critic, e))


@pytest.mark.parametrize("n", [1, 3, 10])
def test_per_member_inputs_and_autograd_path(n: int) -> None:
    """``[N, B, in]`` inputs give each critic its own rows; ``forward_autograd`` is the same
    function as the fast path, and it can be differentiated twice (EDAC)."""
    critic = _critic(n)
    nets = separate_mlps(critic.net)
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(n, B, OBS, generator=g, dtype=torch.float64)
    actions = torch.rand(n, B, ACT, generator=g, dtype=torch.float64).requires_grad_(True)
    fast = critic(obs, actions)
    slow = critic(obs, actions)
    torch.testing.assert_close(fast, slow, **TOL)
    for e, net in enumerate(nets):
        torch.testing.assert_close(fast[e], net(torch.cat([obs[e], actions[e]], -1))[:, 0], **TOL)
    (g_fast,) = torch.autograd.grad(fast.sum(), actions)
    (g_slow,) = torch.autograd.grad(slow.sum(), actions, create_graph=True)
    torch.testing.assert_close(g_fast, g_slow, **TOL)
    # Double backward: the gradient of a function of dQ/da with respect to the weights.
    (g_slow.pow(2).sum()).backward()
    assert critic.net.flat.grad is not None and critic.net.flat.grad.abs().sum() > 0


# ---------------------------------------------------------------------- MC dropout
def _masked_reference(
    critic: EnsembleCritic, x: torch.Tensor, p: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dropout forward with plain autograd ops and the same masks (drawn in the same order
    from the same seed): ``(q [N, B], dq/dflat)``."""
    gen = torch.Generator().manual_seed(seed)
    flat = critic.net.flat.detach().clone().requires_grad_(True)
    views = EnsembleMLP(OBS + ACT, 1, HIDDEN, ensemble=critic.num_critics).double()
    h = x.unsqueeze(0).expand(critic.num_critics, *x.shape)
    offset = 0
    for i, (fan_in, fan_out) in enumerate(views.sizes):
        n_w = critic.num_critics * fan_in * fan_out
        w = flat[offset : offset + n_w].view(critic.num_critics, fan_in, fan_out)
        offset += n_w
        b = flat[offset : offset + critic.num_critics * fan_out].view(critic.num_critics, 1, -1)
        offset += critic.num_critics * fan_out
        h = torch.baddbmm(b, h, w)
        if i < len(views.sizes) - 1:
            h = torch.relu(h)
            h = h * _dropout_scale(h, p, gen)
    q = h[..., 0]
    (grad,) = torch.autograd.grad(q.sum(), flat)
    return q.detach(), grad


def test_dropout_masks_drop_p_of_the_units() -> None:
    """Each factor is 0 (probability p, at a 1/65536 resolution) or 1 / (1 - p)."""
    h = torch.empty(3, 1000, 100)
    scale = _dropout_scale(h, 0.1, torch.Generator().manual_seed(0))
    assert scale.shape == h.shape and scale.dtype == h.dtype
    assert torch.all((scale == 0) | (scale == torch.tensor(1.0).mul_(1 / 0.9)))
    assert (scale == 0).double().mean().item() == pytest.approx(0.1, abs=0.003)
    odd = _dropout_scale(torch.empty(7, 3), 0.5, torch.Generator().manual_seed(1))  # n % 4 != 0
    assert odd.shape == (7, 3)


@pytest.mark.parametrize("n", [1, 3])
def test_dropout_matches_masked_reference(n: int) -> None:
    critic = _critic(n)
    obs, actions = _data(4)
    x = torch.cat([obs, actions], -1)
    q = critic(obs, actions, dropout=0.3, generator=torch.Generator().manual_seed(5))
    q.sum().backward()
    q_ref, grad_ref = _masked_reference(critic, x, 0.3, seed=5)
    torch.testing.assert_close(q, q_ref, **TOL)
    assert critic.net.flat.grad is not None
    torch.testing.assert_close(critic.net.flat.grad, grad_ref, **TOL)
    # Some units were dropped: the output differs from the plain network's.
    assert not torch.allclose(q, critic(obs, actions))


def test_dropout_zero_is_the_plain_network_and_masks_follow_the_generator() -> None:
    critic = _critic(3)
    obs, actions = _data(6)
    plain = critic(obs, actions)
    torch.testing.assert_close(critic(obs, actions, dropout=0.0), plain, rtol=0, atol=0)
    a = critic(obs, actions, dropout=0.5, generator=torch.Generator().manual_seed(0))
    b = critic(obs, actions, dropout=0.5, generator=torch.Generator().manual_seed(0))
    c = critic(obs, actions, dropout=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # Inverted dropout keeps the first layer's expected activation: the MC mean over many masks
    # of a one-hidden-layer critic (linear after the dropped layer) approaches the plain output.
    torch.manual_seed(0)
    shallow = EnsembleCritic(OBS, ACT, (32,), num_critics=2).double()
    gen = torch.Generator().manual_seed(2)
    rows = torch.cat([obs, actions], -1).repeat(4000, 1)
    mc = shallow.net(rows, dropout=0.2, generator=gen).view(2, 4000, B).mean(1)
    torch.testing.assert_close(
        mc[..., None], shallow.net(torch.cat([obs, actions], -1)), atol=0.02, rtol=0
    )
    with pytest.raises(ValueError, match="dropout"):
        critic(obs, actions, dropout=1.0)


# ---------------------------------------------------------------------- EDAC's diversity term
def test_gradient_similarity_equals_the_gram_matrix_form() -> None:
    """O(N) form == CORL's ``sum of off-diagonal entries of the N x N cosine matrix / (N - 1)``."""
    g = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit = g / (g.norm(dim=-1, keepdim=True) + 1e-8)
    gram = torch.einsum("ibk,jbk->bij", unit, unit)  # [B, N, N]
    off = (gram * (1 - torch.eye(6, dtype=torch.float64))).sum((1, 2)) / 5
    torch.testing.assert_close(ensemble_gradient_similarity(g), off.mean(), **TOL)
    # All equal: N (N - 1) pairs of cosine 1, divided by N - 1.
    same = g[:1].expand(6, -1, -1)
    torch.testing.assert_close(ensemble_gradient_similarity(same), torch.tensor(6.0).double())


def _bandit_like(n: int = 5000, obs_dim: int = 8, act_dim: int = 4, seed: int = 0) -> Dataset:
    """Noisy actions around a state-dependent best action ``tanh(W s)``, rewarded by
    ``-|a - tanh(W s)|^2``: critics trained on it all learn the same slope in ``a``, so without
    the diversity term their action-gradients align. (Pendulum's one-dimensional actions would
    make every cosine similarity +-1.)"""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    best = np.tanh(obs @ rng.standard_normal((obs_dim, act_dim)).astype(np.float32) / 3.0)
    actions = np.clip(best + 0.3 * rng.standard_normal((n, act_dim)), -1, 1).astype(np.float32)
    return Dataset(
        observations=obs,
        actions=actions,
        rewards=-((actions - best) ** 2).sum(1).astype(np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.zeros(n, dtype=bool),
    )


def test_edac_decorrelates_the_critics_action_gradients() -> None:
    """What the paper measures (An et al., 2021, section 4): with eta > 0 the critics'
    action-gradients at dataset actions are less aligned than with eta = 0 (SAC-N), on the same
    data, seed and batches."""
    data = _bandit_like()
    probe = TensorSampler(data, batch_size=1024, seed=123).sample()
    sims = {}
    for eta in (0.0, 1.0):
        cfg = EDACConfig(num_critics=5, eta=eta, hidden=(32, 32), batch_size=64)
        algo = EDAC(EnvSpec((8,), 4), cfg, seed=0)
        sampler = TensorSampler(data, batch_size=64, seed=0)
        for _ in range(200):
            algo.update(sampler.sample())
        sims[eta] = algo.gradient_similarity(probe.obs, probe.actions)
    # Observed (mean pairwise cosine similarity; 0.05 at initialisation): 0.34 with eta = 0,
    # -0.12 with eta = 1 (at 500 updates: 0.57 and -0.20).
    assert sims[1.0] < sims[0.0] - 0.2, sims
    assert sims[0.0] > 0.15, sims  # without the term the critics do align


# ---------------------------------------------------------------------- presets
def test_presets() -> None:
    assert SACNConfig().num_critics == 10
    assert SACNConfig.preset("hopper-medium-v2").num_critics == 500
    assert SACNConfig.preset("walker2d-medium-v2", batch_size=64).batch_size == 64
    cfg = EDACConfig.preset("halfcheetah-medium-expert-v2")
    assert (cfg.num_critics, cfg.eta) == (10, 5.0)
    assert EDACConfig.preset("hopper-medium-v2").num_critics == 50
    assert "presets" not in EDACConfig().to_dict()  # a class attribute, not a saved option
    with pytest.raises(KeyError, match="no EDACConfig preset"):
        EDACConfig.preset("pendulum-medium-v0")
    assert UWACConfig().num_dropout_samples == 100


def test_uwac_weight_shrinks_with_variance() -> None:
    from offrl.algos import UWAC

    algo = UWAC(EnvSpec((3,), 1), UWACConfig(hidden=(8, 8), vae_hidden=(8, 8), beta=0.5))
    var = torch.tensor([0.0, 1.0, 10.0])
    np.testing.assert_allclose(algo.uncertainty_weight(var), np.exp(-0.5 * var.numpy()), rtol=1e-6)
    inverse = UWAC(EnvSpec((3,), 1), UWACConfig(hidden=(8, 8), vae_hidden=(8, 8), weight="inverse"))
    np.testing.assert_allclose(inverse.uncertainty_weight(var), [1.0, 0.5, 0.05], rtol=1e-6)


# ---------------------------------------------------------------------- the speed script
def test_ensemble_scaling_script_runs(tmp_path: Path) -> None:
    """benchmarks/ensemble_scaling.py end to end with tiny settings (the figures are
    meaningless at this size; the committed ones come from a full run)."""
    module = load_script("ensemble_scaling.py", "ensemble_scaling")
    args = ["--seconds", "0.2", "--rounds", "1", "--n", "2", "5", "--threads", "1"]
    assert module.main([*args, "--hidden", "32", "32", "--amin", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "ensemble.json").read_text())
    assert [r["n"] for r in result["rows"]] == [2, 5]
    for row in result["rows"]:
        assert row["offrl_over_amin"] > 0
        for variant in ("offrl", "loop", "amin"):
            assert row[f"{variant}_updates_per_s"] > 0
            assert 0 < row[f"{variant}_bound_fraction"] < 1
        # Same algorithm, same FLOPs up to the loop's extra (wasted) critic-weight gradients
        # in the actor step.
        assert row["offrl_flops"] <= row["loop_flops"]
    assert result["rows"][0]["offrl_cost_vs_n2"] == 1.0
    assert "| 5 |" in (tmp_path / "ENSEMBLE.md").read_text()
    assert "offrl speed-up over amin" in (tmp_path / "ENSEMBLE.md").read_text()


# ---------------------------------------------------------------------- the minimum's backward
@pytest.mark.parametrize("dense_above", [0.0, 1.0], ids=["dense", "grouped"])
@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("shared", [True, False], ids=["shared-input", "per-member-input"])
def test_min_equals_amin_in_value_and_action_gradient(
    n: int, shared: bool, dense_above: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``min_q`` (the actor's ``min_i Q_i``, backward only through each row's minimiser) gives
    the values and dQ/da of ``amin`` over the full ensemble, on both backward paths, and leaves
    the weights without gradient."""
    monkeypatch.setattr("offrl.nn.mlp._DENSE_ABOVE", dense_above)
    critic = _critic(n)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # larger weights than nn.Linear's: every member is some row's minimum
        critic.net.flat.copy_(torch.randn(critic.net.flat.shape, generator=g))
    lead = () if shared else (n,)
    obs = torch.randn(*lead, 64, OBS, generator=g, dtype=torch.float64)
    actions = torch.rand(*lead, 64, ACT, generator=g, dtype=torch.float64) * 2 - 1
    a_ref = actions.clone().requires_grad_(True)
    want = critic(obs, a_ref, detach_params=True).amin(0)
    (grad_want,) = torch.autograd.grad((want * torch.arange(64.0)).sum(), a_ref)
    a = actions.clone().requires_grad_(True)
    got = critic.min_q(obs, a)
    (grad_got,) = torch.autograd.grad((got * torch.arange(64.0)).sum(), a)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(grad_got, grad_want, **TOL)
    assert critic.net.flat.grad is None
    if n > 1 and dense_above == 1.0:  # the grouped path really had several groups
        assert critic(obs, actions).argmin(0).unique().numel() > 1


def test_min_rejects_wide_outputs() -> None:
    with pytest.raises(ValueError, match="one-output"):
        EnsembleMLP(3, 2, (8,), ensemble=4).min(torch.zeros(5, 3))


@pytest.mark.parametrize(
    ("layer_norm", "after", "activation"),
    [(True, False, "relu"), (True, True, "relu"), (False, False, "tanh"), (True, False, "silu")],
    ids=["ln-relu", "relu-ln", "tanh", "ln-silu"],
)
def test_every_layer_kind_equals_separate_networks(
    layer_norm: bool, after: bool, activation: str
) -> None:
    """LayerNorm (either order) and other activations: the ensemble computes what ``E``
    separate ``nn.Sequential`` networks with the same weights compute, values and gradients."""
    from torch import nn

    torch.manual_seed(3)
    e, n_in, hidden = 3, 5, (7, 6)
    net = EnsembleMLP(
        n_in, 2, hidden, ensemble=e, layer_norm=layer_norm, activation=activation,
        norm_after_activation=after,
    ).double()  # fmt: skip
    with torch.no_grad():  # non-trivial affines, so that a wrong gamma/beta shows
        for g, b in net.norms():
            g.uniform_(0.5, 1.5)
            b.uniform_(-0.3, 0.3)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}[activation]
    x = torch.randn(4, n_in, dtype=torch.float64)
    for m in range(e):
        layers: list[nn.Module] = []
        dims = [n_in, *hidden, 2]
        for i, (w, b) in enumerate(net.layers()):
            lin = nn.Linear(dims[i], dims[i + 1]).double()
            with torch.no_grad():
                lin.weight.copy_(w[m].t())
                lin.bias.copy_(b[m, 0])
            layers.append(lin)
            if i < len(hidden):
                block: list[nn.Module] = [act()]
                if layer_norm:
                    ln = nn.LayerNorm(dims[i + 1]).double()
                    with torch.no_grad():
                        ln.weight.copy_(net.norms()[i][0][m, 0])
                        ln.bias.copy_(net.norms()[i][1][m, 0])
                    block = [act(), ln] if after else [ln, act()]
                layers.extend(block)
        ref = nn.Sequential(*layers)
        xr = x.clone().requires_grad_(True)
        xe = x.clone().requires_grad_(True)
        out_ref = ref(xr)
        out = net(xe)[m]
        torch.testing.assert_close(out, out_ref)
        (gr,) = torch.autograd.grad(out_ref.sum(), xr)
        (ge,) = torch.autograd.grad(out.sum(), xe)
        torch.testing.assert_close(ge, gr)
