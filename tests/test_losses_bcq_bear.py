"""BEAR's MMD, the BCQ/BEAR conditional VAE and their targets, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from offrl.algos import BCQ, BEAR, BCQConfig, BEARConfig, EnvSpec, get_algorithm
from offrl.data.sampler import Batch
from offrl.losses import mmd
from offrl.nn import ConditionalVAE


# ---------------------------------------------------------------------- MMD
def test_mmd_of_identical_sets_is_zero() -> None:
    x = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0))  # [B, n, d]
    for kernel in ("laplacian", "gaussian"):
        # The biased (V-statistic) estimator: the three means cancel exactly.
        assert torch.equal(mmd(x, x.clone(), kernel, sigma=1.0, eps=0.0), torch.zeros(3))
        # The default eps only keeps sqrt differentiable: sqrt(1e-6).
        assert mmd(x, x, kernel, sigma=1.0).tolist() == pytest.approx([1e-3] * 3)


def test_mmd_by_hand_one_sample_each() -> None:
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, -1.0]])  # n = m = 1, d = 2
    # Laplacian: k(x, y) = exp(-|x - y|_1 / (2 sigma)) = exp(-2 / 1); k(x, x) = k(y, y) = 1.
    lap = mmd(x, y, "laplacian", sigma=0.5, eps=0.0)
    assert float(lap) == pytest.approx(math.sqrt(2 - 2 * math.exp(-2.0)))
    # Gaussian: k(x, y) = exp(-|x - y|_2^2 / (2 sigma)) = exp(-2 / 4) (sigma, not sigma^2).
    gauss = mmd(x, y, "gaussian", sigma=2.0, eps=0.0)
    assert float(gauss) == pytest.approx(math.sqrt(2 - 2 * math.exp(-0.5)))


def test_mmd_by_hand_unequal_set_sizes() -> None:
    x = torch.tensor([[0.0], [2.0]])  # n = 2
    y = torch.tensor([[1.0]])  # m = 1
    k = lambda d: math.exp(-abs(d) / 2.0)  # noqa: E731  (laplacian, sigma = 1)
    xx = (k(0) + k(2) + k(2) + k(0)) / 4
    xy = (k(1) + k(1)) / 2
    expected = math.sqrt(xx + 1.0 - 2 * xy)
    assert float(mmd(x, y, "laplacian", sigma=1.0, eps=0.0)) == pytest.approx(expected)


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_mmd_grows_with_separation_and_has_finite_gradient(kernel: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 3, generator=g)
    y = torch.randn(4, 6, 3, generator=g)
    dists = [float(mmd(x, y + shift, kernel, sigma=2.0).mean()) for shift in (0.0, 1.0, 3.0)]
    assert dists[0] < dists[1] < dists[2], dists
    # Per leading index: shifting one state's samples only changes that state's distance.
    moved = y.clone()
    moved[2] += 5.0
    base, out = mmd(x, y, kernel, 2.0), mmd(x, moved, kernel, 2.0)
    assert out.shape == (4,)
    assert torch.equal(base[[0, 1, 3]], out[[0, 1, 3]]) and out[2] > base[2]
    # Differentiable even at identical sets (eps), pulling x towards y elsewhere.
    xg = x.clone().requires_grad_(True)
    mmd(xg, x, kernel, 2.0).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_mmd_kernels_differ_and_unknown_kernel_rejected() -> None:
    x, y = torch.zeros(1, 2), torch.full((1, 2), 0.5)
    assert float(mmd(x, y, "laplacian", 1.0)) != pytest.approx(float(mmd(x, y, "gaussian", 1.0)))
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, y, "cosine")


# ---------------------------------------------------------------------- VAE
def _vae(**kw: object) -> ConditionalVAE:
    torch.manual_seed(0)
    return ConditionalVAE(3, 2, hidden=(16, 16), **kw)  # type: ignore[arg-type]


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, generator=g), torch.rand(n, 2, generator=g) * 2 - 1


def test_vae_loss_by_hand() -> None:
    vae = _vae()
    assert vae.latent_dim == 4  # 2 * act_dim, as in BCQ
    obs, actions = _batch()
    loss, info = vae.loss(obs, actions, beta=0.3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        mean, log_std = vae.encode(obs, actions)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
        recon = torch.tanh(vae.decoder(torch.cat([obs, mean + log_std.exp() * eps], 1))[0])
        mse = ((recon - actions) ** 2).mean()
        kl = (0.5 * (mean**2 + torch.exp(2 * log_std) - 1 - 2 * log_std)).mean()
    torch.testing.assert_close(info["vae_recon"], mse)
    torch.testing.assert_close(info["vae_kl"], kl)
    torch.testing.assert_close(loss.detach(), mse + 0.3 * kl)
    loss.backward()  # both networks are trained by it
    assert vae.encoder.flat.grad is not None and vae.encoder.flat.grad.abs().sum() > 0
    assert vae.decoder.flat.grad is not None and vae.decoder.flat.grad.abs().sum() > 0


def test_vae_kl_is_zero_at_the_prior() -> None:
    vae = _vae()
    with torch.no_grad():
        vae.encoder.flat.zero_()  # mean = 0, log_std = 0: the posterior is N(0, I)
    obs, actions = _batch()
    loss, info = vae.loss(obs, actions, beta=10.0)
    assert float(info["vae_kl"]) == 0.0
    assert float(loss.detach()) == pytest.approx(float(info["vae_recon"]))


def test_vae_decode_samples_shapes_bounds_and_latent_clip() -> None:
    vae = _vae(latent_clip=0.5)
    obs, _ = _batch(5)
    z = vae.sample_latent(1000, 1, torch.Generator().manual_seed(0))
    assert z.shape == (1000, 4) and z.abs().max() <= 0.5 and (z.abs() == 0.5).any()
    a = vae.decode_samples(obs, 7, torch.Generator().manual_seed(3))
    raw = vae.decode_samples(obs, 7, torch.Generator().manual_seed(3), raw=True)
    assert a.shape == raw.shape == (7, 5, 2)
    assert a.abs().max() <= 1.0
    torch.testing.assert_close(a, torch.tanh(raw))
    # Sample-major rows: sample j of state b is decoded from obs[b].
    z = vae.sample_latent(7, 5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[6, 4], vae.decode(obs[4:5], z[6 * 5 + 4 : 6 * 5 + 5])[0])


def test_vae_learns_a_deterministic_behaviour_policy() -> None:
    """A few hundred Adam steps fit a = tanh(s_0) - its decoded samples end up near it."""
    vae = _vae()
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(256, 3, generator=g)
    actions = torch.stack([torch.tanh(obs[:, 0]), -torch.tanh(obs[:, 1])], 1) * 0.8
    first = None
    for _ in range(300):
        loss, info = vae.loss(obs, actions, beta=0.5, generator=g)
        first = float(info["vae_recon"]) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = (vae.decode_samples(obs, 4, g) - actions).pow(2).mean()
    assert float(err) < 0.1 * first, (float(err), first)


# ---------------------------------------------------------------------- BCQ / BEAR pieces
def _tiny_batch(n: int = 5) -> Batch:
    g = torch.Generator().manual_seed(4)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        actions=torch.rand(n, 2, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        dones=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])[:n],
    )


def test_bcq_target_by_hand() -> None:
    """y = r + gamma (1 - d) max_j [lambda min_i + (1 - lambda) max_i] Q'_i(s', a_j), looping
    over states and proposals one at a time."""
    algo = BCQ(EnvSpec((3,), 2), BCQConfig(hidden=(8,), vae_hidden=(8,), num_target_samples=4))
    with torch.no_grad():
        algo.critic_target.net.flat.mul_(1.5)  # targets differ from the online critics
    batch = _tiny_batch()
    state = algo.generator.get_state()
    target = algo.bcq_target(batch)
    g = torch.Generator().manual_seed(0)
    g.set_state(state)
    z = algo.vae.sample_latent(4, 5, g)  # the same draws, sample-major
    expected = []
    with torch.no_grad():
        for b in range(5):
            s = batch.next_obs[b : b + 1]
            values = []
            for j in range(4):
                a = algo.actor_target(s, algo.vae.decode(s, z[j * 5 + b : j * 5 + b + 1]))
                q = algo.critic_target(s, a)[:, 0]  # [N]
                values.append(0.75 * q.min() + 0.25 * q.max())
            nxt = max(values)
            expected.append(batch.rewards[b] + 0.99 * (1 - batch.dones[b]) * nxt)
    torch.testing.assert_close(target, torch.stack(expected), rtol=1e-5, atol=1e-5)


def test_bcq_perturbation_is_bounded_by_phi() -> None:
    algo = BCQ(EnvSpec((3,), 2), BCQConfig(hidden=(8,), vae_hidden=(8,), phi=0.05))
    with torch.no_grad():
        algo.actor.net.flat.mul_(100.0)  # saturate the tanh
    a = torch.tensor([[0.0, 0.99]]).repeat(4, 1)
    out = algo.actor(torch.randn(4, 3), a)
    assert (out - a)[:, 0].abs().max() <= 0.05 + 1e-6
    assert out.max() <= 1.0  # 0.99 + 0.05 is clipped to the box


@pytest.mark.parametrize("name", ["bcq", "bear"])
def test_acting_leaves_the_training_generator_alone(name: str) -> None:
    cls = get_algorithm(name)
    algo = cls(EnvSpec((3,), 2), cls.config_class.from_dict({"hidden": (8,), "vae_hidden": (8,)}))
    before = algo.generator.get_state()
    a1 = algo.act(np.zeros((4, 3), np.float32))
    assert torch.equal(algo.generator.get_state(), before)
    np.testing.assert_array_equal(a1, algo.act(np.zeros((4, 3), np.float32)))


def test_bear_warmup_trains_the_actor_on_mmd_only() -> None:
    cfg = BEARConfig(hidden=(8,), vae_hidden=(8,), warmup_steps=2)
    algo = BEAR(EnvSpec((3,), 2), cfg)
    batch = _tiny_batch()
    m0 = algo.update(batch)
    assert "mmd" in m0 and "lagrange" in m0 and "entropy" in m0
    # During the warm-up the actor loss is alpha (MMD - epsilon) alone.
    assert m0["actor_loss"] == pytest.approx(-m0["lagrange_loss"], rel=1e-5)
    algo.update(batch)
    loss, info = algo.support.actor_loss(algo, batch)  # step 2: the SAC term is on
    assert float(loss.detach()) != pytest.approx(
        -float(algo.support.lagrange_loss(info["_mmd"])[0].detach())
    )
    # The multiplier's log stays in [-5, 10] however far the constraint is violated.
    for start, threshold in ((10.0, -100.0), (-5.0, 100.0)):
        fresh = BEAR(EnvSpec((3,), 2), BEARConfig(hidden=(8,), vae_hidden=(8,)))
        fresh.support.log_lagrange.value.data.fill_(start)
        fresh.config.mmd_threshold = threshold  # violated / slack: the step pushes past the bound
        fresh.update(batch)
        assert float(fresh.support.log_lagrange.value.detach()) == start


def test_bear_and_uwac_share_the_support_constraint_as_siblings_of_sac() -> None:
    """UWAC is SAC with BEAR's support constraint, not a subclass of BEAR; the part's networks
    and optimisers are saved under their own names and restored into the part."""
    from offrl.algos import SAC, UWAC, UWACConfig
    from offrl.algos.support import SupportConstraint

    assert UWAC.__bases__ == (SAC,) and BEAR.__bases__ == (SAC,)
    algo = UWAC(EnvSpec((3,), 2), UWACConfig(hidden=(8,), vae_hidden=(8,), num_dropout_samples=2))
    assert isinstance(algo.support, SupportConstraint)
    algo.update(_tiny_batch())
    state = algo.state_dict()
    assert {"vae", "vae_optim", "log_lagrange", "lagrange_optim"} <= set(state)
    fresh = UWAC(EnvSpec((3,), 2), algo.config, seed=5)
    fresh.load_state_dict(state)
    for p, q in zip(fresh.support.vae.parameters(), algo.support.vae.parameters(), strict=True):
        assert torch.equal(p, q)
    assert (
        fresh.support.vae_optim.state_dict()["state"].keys() == state["vae_optim"]["state"].keys()
    )
