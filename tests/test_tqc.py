"""TQC: the truncated target, the critics' loss and the actor's value against the paper's
formulas written out pairwise (that it learns online: tests/test_factory.py, beside SAC)."""

from __future__ import annotations

import pytest
import torch

from offrl.algos import EnvSpec
from offrl.algos.tqc import TQC, TQCConfig
from offrl.data.sampler import Batch

OBS, ACT, B = 3, 2, 6


def _tqc(**options: object) -> TQC:
    cfg = TQCConfig.from_dict(
        {"hidden": (16,), "critic_hidden": (16,), "num_quantiles": 5, "batch_size": B, **options}
    )
    return TQC(EnvSpec((OBS,), ACT), cfg, seed=0)


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(B, OBS, generator=g),
        actions=torch.rand(B, ACT, generator=g) * 2 - 1,
        rewards=torch.randn(B, generator=g),
        next_obs=torch.randn(B, OBS, generator=g),
        dones=(torch.rand(B, generator=g) < 0.3).float(),
    )


@pytest.mark.parametrize(("critics", "drop"), [(3, 2), (2, 0), (1, 4)])
def test_target_keeps_the_smallest_pooled_atoms(critics: int, drop: int) -> None:
    """``y_i = r + gamma (1 - done) (z_(i) - alpha log pi)`` over the ``(M - d) N`` smallest
    atoms of all target critics, from the same draw of ``a' ~ pi(s')``."""
    algo = _tqc(num_critics=critics, drop_per_critic=drop)
    with torch.no_grad():
        algo.log_alpha.value.fill_(-1.3)
        algo.critic_target.net.flat.mul_(3.0)  # targets differ from the online critics
    batch = _batch()
    algo.generator.manual_seed(7)
    target = algo.soft_target(batch)

    algo.generator.manual_seed(7)
    next_a, next_logp = algo.actor.sample(batch.next_obs, generator=algo.generator)
    z = algo.critic_target(batch.next_obs, next_a)  # [N, B, M]
    m = algo.config.num_quantiles
    keep = (m - drop) * critics
    assert target.shape == (B, keep)
    for row in range(B):
        atoms = sorted(z[:, row, :].flatten().tolist())[:keep]
        backed = [a - torch.exp(torch.tensor(-1.3)).item() * next_logp[row].item() for a in atoms]
        expect = batch.rewards[row] + 0.99 * (1 - batch.dones[row]) * torch.tensor(backed)
        torch.testing.assert_close(target[row], expect.float(), rtol=1e-5, atol=1e-5)


def test_critic_loss_is_the_pairwise_quantile_huber_mean() -> None:
    """The official code's loss: the mean over batch, critics, atoms and targets of
    ``|tau_m - 1(delta < 0)| * huber(delta)``, ``delta = y_i - theta_n^m``, with its gradient."""
    algo = _tqc(num_critics=3)
    batch = _batch(1)
    with torch.no_grad():
        algo.critic.net.flat.mul_(4.0)  # atoms spread beyond the Huber threshold
    algo.generator.manual_seed(3)
    loss, info = algo.critic_loss(batch)
    (grad,) = torch.autograd.grad(loss, algo.critic.net.flat)

    algo.generator.manual_seed(3)
    target = algo.soft_target(batch)  # [B, K]
    theta = algo.critic(batch.obs, batch.actions)  # [N, B, M]
    m = theta.shape[-1]
    tau = (torch.arange(m) + 0.5) / m
    delta = target[None, :, None, :] - theta[:, :, :, None]  # [N, B, M, K]
    huber = torch.where(delta.abs() > 1, delta.abs() - 0.5, 0.5 * delta**2)
    expect = ((tau[None, None, :, None] - (delta < 0).float()).abs() * huber).mean()
    (expect_grad,) = torch.autograd.grad(expect, algo.critic.net.flat)
    torch.testing.assert_close(loss, expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expect_grad, rtol=1e-4, atol=1e-7)
    assert (delta.abs() > 1).any() and (delta.abs() < 1).any()  # both Huber branches used
    torch.testing.assert_close(info["q_mean"], theta.mean())


def test_actor_value_is_the_mean_over_all_atoms() -> None:
    algo = _tqc(num_critics=2)
    batch = _batch(2)
    actions = batch.actions.clone().requires_grad_(True)
    q = algo.actor_q(batch.obs, actions)
    torch.testing.assert_close(q, algo.critic(batch.obs, batch.actions).mean((0, 2)))
    q.sum().backward()
    assert actions.grad is not None and algo.critic.net.flat.grad is None  # dQ/da only


def test_drop_must_leave_atoms() -> None:
    with pytest.raises(ValueError, match="drop_per_critic"):
        TQCConfig(num_quantiles=5, drop_per_critic=5)
