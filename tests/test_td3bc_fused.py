"""TD3+BC's hand-derived update (offrl.algos.td3bc_fused) computes the autograd path's update."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _devices import DEVICES

from offrl.algos import EnvSpec
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.algos.td3bc_fused import fused_train_step
from offrl.bench.speed import synthetic_dataset
from offrl.data.sampler import Batch, TensorSampler
from offrl.nn.mlp import EnsembleMLP

OBS, ACT = 7, 3


def _pair(device: str = "cpu", **kw: Any) -> tuple[TD3BC, TD3BC]:
    """The two paths from the same weights and generator state."""
    spec = EnvSpec((OBS,), ACT)
    fused = TD3BC(spec, TD3BCConfig(hidden=(32, 32), **kw), seed=0, device=device)
    plain = TD3BC(spec, TD3BCConfig(hidden=(32, 32), fused=False, **kw), seed=0, device=device)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _run_both(
    fused: TD3BC, plain: TD3BC, updates: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    data = synthetic_dataset(n=1000, obs_dim=OBS, act_dim=ACT)
    sampler = TensorSampler(data, 64, seed=1, device=str(fused.device))
    mf, mp = [], []
    for _ in range(updates):
        batch = sampler.sample()
        mf.append(fused.update(batch))
        mp.append(plain.update(batch))
    return mf, mp


def _max_diff(a: TD3BC, b: TD3BC) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    diffs = [0.0]
    for key in ("actor", "critic", "actor_target", "critic_target"):
        for name, t in sa[key].items():
            diffs.append(float((t - sb[key][name]).abs().max()))
    for key in ("actor_optim", "critic_optim"):
        for i, st in sa[key]["state"].items():
            for name in ("step", "exp_avg", "exp_avg_sq"):
                diffs.append(float((st[name] - sb[key]["state"][i][name]).abs().max()))
    return max(diffs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw", [{}, {"num_critics": 3, "policy_freq": 1}, {"policy_freq": 3, "alpha": 0.5}]
)
def test_fused_update_equals_autograd(kw: dict[str, Any], device: str) -> None:
    """Same weights, targets, Adam moments and metrics after critic-only and actor updates."""
    fused, plain = _pair(device, **kw)
    assert fused._fusable() and not plain.config.fused
    mf, mp = _run_both(fused, plain, updates=7)
    for a, b in zip(mf, mp, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    assert _max_diff(fused, plain) < 1e-6


def test_fused_comparison_can_fail() -> None:
    """Other target-smoothing noise (another seed's generator): the weights part (Adam moves a
    weight by up to lr = 3e-4 a step)."""
    fused, plain = _pair()
    plain.generator.manual_seed(5)
    _run_both(fused, plain, updates=2)
    assert _max_diff(fused, plain) > 1e-4


def test_overridden_loss_takes_autograd() -> None:
    """A subclass that changes a loss is trained on its loss, not on the hand-derived one."""
    calls: list[int] = []

    class NoBC(TD3BC):
        def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            calls.append(self.num_updates)
            pi = self.actor(batch.obs)
            return -self.critic(batch.obs, pi, members=0, detach_params=True)[0].mean(), {}

    algo = NoBC(EnvSpec((OBS,), ACT), TD3BCConfig(hidden=(16, 16)), seed=0)
    assert algo.config.fused and not algo._fusable()
    sampler = TensorSampler(synthetic_dataset(n=100, obs_dim=OBS, act_dim=ACT), 8, seed=0)
    for _ in range(4):
        metrics = algo.update(sampler.sample())
    assert calls == [1, 3]  # every policy_freq = 2 updates
    assert "bc_loss" not in metrics  # the subclass's (empty) actor metrics


def test_fused_step_writes_optimiser_gradients() -> None:
    """The gradients reach the algorithm's own optimisers as ``.grad`` (hooks and checkpoints
    see what they see on the autograd path)."""
    algo = _pair(policy_freq=1)[0]
    seen: list[int] = []
    algo.actor_optim.register_step_pre_hook(lambda opt, args, kw: seen.append(1))
    batch = TensorSampler(synthetic_dataset(n=100, obs_dim=OBS, act_dim=ACT), 8, seed=0).sample()
    fused_train_step(algo, batch)
    assert seen == [1]
    assert algo.actor.net.flat.grad is not None and algo.critic.net.flat.grad is not None


def test_backward_cached_matches_autograd() -> None:
    """EnsembleMLP's hand-run backward: weight and input gradients, all members or one."""
    torch.manual_seed(0)
    net = EnsembleMLP(5, 2, (16, 16), ensemble=3)
    x = torch.randn(10, 5)
    g = torch.randn(3, 10, 2)
    for members, gm in ((None, g), (1, g[1:2])):
        xa = x.clone().requires_grad_(True)
        net.flat.grad = None
        (net(xa, members=members) * gm).sum().backward()
        want_w, want_x = net.flat.grad.clone(), xa.grad
        out, cache = net.forward_cached(x, members=members)
        torch.testing.assert_close(out, net(x, members=members).detach())
        dx = net.backward_cached(gm, cache, members=members, inputs=True)
        assert dx is not None
        torch.testing.assert_close(net.flat.grad, want_w)
        torch.testing.assert_close(dx.sum(0), want_x)
    # An existing .grad is overwritten in place (every element), not accumulated into.
    buffer = torch.full_like(net.flat, 7.0)
    net.flat.grad = buffer
    out, cache = net.forward_cached(x)
    assert net.backward_cached(g, cache) is None
    assert net.flat.grad is buffer
    net.flat.grad = None
    net.backward_cached(g, cache)
    torch.testing.assert_close(buffer, net.flat.grad)
