"""ReBRAC's losses by hand, its per-task defaults, and the sampler's ``Batch.next_actions``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import EnvSpec
from offrl.algos.rebrac import PAPER_DEFAULTS, ReBRAC, ReBRACConfig
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.data import Dataset
from offrl.data.sampler import Batch, TensorSampler


def _tiny(**kw: Any) -> ReBRAC:
    return ReBRAC(EnvSpec((3,), 2), ReBRACConfig(hidden=(8, 8), gamma=0.9, **kw), seed=0)


def _batch(seed: int = 0, n: int = 6) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        actions=torch.rand(n, 2, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        dones=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])[:n],
        next_actions=torch.rand(n, 2, generator=g) * 2 - 1,
    )


def test_td_target_by_hand() -> None:
    """Constant target networks: pi'(s') = (0.5, -0.25), Q'_1 = 2, Q'_2 = 3. Then
    y = r + 0.9 (1 - d) (min(2, 3) - 0.5 ||a' - a'_data||^2)."""
    algo = _tiny(policy_noise=0.0, critic_bc_coef=0.5)
    with torch.no_grad():
        # Zero weights (and LayerNorm gains): each network outputs its output bias.
        algo.actor_target.net.flat.zero_()
        algo.actor_target.net.layers()[-1][1][0, 0] = torch.atanh(torch.tensor([0.5, -0.25]))
        algo.critic_target.net.flat.zero_()
        algo.critic_target.net.layers()[-1][1][:, 0, 0] = torch.tensor([2.0, 3.0])
    batch = _batch()._replace(
        rewards=torch.tensor([1.0, 1.0, -2.0, 0.0, 5.0, 0.5]),
        next_actions=torch.tensor(
            [[0.5, 0.75], [0.5, 0.75], [0.5, -0.25], [-0.5, -0.25], [1.0, 1.0], [0.0, 0.0]]
        ),
    )
    # ||a' - a'_data||^2 per row: 1, 1, 0, 1, 0.25 + 1.5625, 0.25 + 0.0625.
    expected = torch.tensor(
        [
            1.0 + 0.9 * (2.0 - 0.5 * 1.0),  # 2.35
            1.0,  # terminal: no bootstrap, no penalty
            -2.0 + 0.9 * 2.0,  # the data's next action is the policy's: no penalty
            0.0 + 0.9 * (2.0 - 0.5 * 1.0),
            5.0,  # terminal
            0.5 + 0.9 * (2.0 - 0.5 * 0.3125),
        ]
    )
    torch.testing.assert_close(algo.td_target(batch), expected, rtol=1e-6, atol=1e-6)
    assert algo.td_target(batch)[0].item() == pytest.approx(2.35)


def test_td_target_without_bc_is_td3bcs() -> None:
    """beta_critic = 0 is TD3+BC's target (same networks, same noise); beta > 0 subtracts
    gamma (1 - d) beta ||a' - a'_data||^2 from it, with a' the noisy clipped target action."""
    kw = {"policy_noise": 0.2, "noise_clip": 0.5}
    rebrac = _tiny(critic_bc_coef=0.0, critic_layer_norm=False, edac_init=False, **kw)
    td3bc = TD3BC(EnvSpec((3,), 2), TD3BCConfig(hidden=(8, 8), gamma=0.9, **kw), seed=5)
    td3bc.actor_target.load_state_dict(rebrac.actor_target.state_dict())
    td3bc.critic_target.load_state_dict(rebrac.critic_target.state_dict())
    batch = _batch(1)
    state = rebrac.generator.get_state()
    td3bc.generator.set_state(state)
    y0 = rebrac.td_target(batch._replace(next_actions=None))  # not needed at beta = 0
    torch.testing.assert_close(y0, td3bc.td_target(batch), rtol=0, atol=0)

    rebrac.config.critic_bc_coef = 0.7
    rebrac.generator.set_state(state)
    noise = torch.randn(batch.actions.shape, generator=rebrac.generator).mul(0.2).clamp(-0.5, 0.5)
    with torch.no_grad():
        a_next = (rebrac.actor_target(batch.next_obs) + noise).clamp(-1, 1)
    penalty = (a_next - batch.next_actions).pow(2).sum(-1)
    rebrac.generator.set_state(state)
    y = rebrac.td_target(batch)
    torch.testing.assert_close(y, y0 - 0.9 * (1 - batch.dones) * 0.7 * penalty)
    assert (y < y0)[batch.dones == 0].all()
    with pytest.raises(ValueError, match="next_actions"):
        rebrac.td_target(batch._replace(next_actions=None))


@pytest.mark.parametrize("normalize_q", [True, False])
def test_actor_loss_by_hand(normalize_q: bool) -> None:
    algo = _tiny(actor_bc_coef=0.3, normalize_q=normalize_q)
    batch = _batch(2)
    with torch.no_grad():
        pi = algo.actor(batch.obs)
        q = algo.critic(batch.obs, pi).amin(0)  # the minimum of both critics, as CORL
        lmbda = 1.0 / q.abs().mean() if normalize_q else 1.0
        bc = ((pi - batch.actions) ** 2).sum(-1)  # summed over action dimensions
        expected = (0.3 * bc - lmbda * q).mean()
    loss, info = algo.actor_loss(batch)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(info["bc_loss"], bc.mean(), rtol=1e-5, atol=1e-6)
    loss.backward()  # the actor's loss trains the actor only
    assert algo.critic.net.flat.grad is None
    assert algo.actor.net.flat.grad is not None and algo.actor.net.flat.grad.abs().sum() > 0


def test_networks_follow_corl() -> None:
    algo = ReBRAC(EnvSpec((3,), 2))
    assert [o for _, o in algo.actor.net.sizes] == [256, 256, 256, 2]
    assert [o for _, o in algo.critic.net.sizes] == [256, 256, 256, 1]
    assert algo.critic.net.layer_norm and algo.critic.net.norm_after_activation
    assert not algo.actor.net.layer_norm
    *hidden, (w, b) = algo.critic.net.layers()
    assert all(bool((bias == 0.1).all()) for _, bias in hidden)
    assert w.abs().max() <= 3e-3 and b.abs().max() <= 3e-3
    assert algo.actor.net.layers()[-1][0].abs().max() <= 1e-3
    cfg = algo.config
    assert (cfg.batch_size, cfg.actor_lr, cfg.critic_lr, cfg.gamma, cfg.tau) == (
        1024,
        1e-3,
        1e-3,
        0.99,
        5e-3,
    )


def test_for_task() -> None:
    cfg = ReBRACConfig.for_task("hopper-medium-v0")  # offrl's name: D4RL's hopper-medium-v2
    assert (cfg.actor_bc_coef, cfg.critic_bc_coef) == PAPER_DEFAULTS["hopper-medium-v2"]
    assert (cfg.batch_size, cfg.actor_lr, cfg.gamma) == (1024, 1e-3, 0.99)
    cfg = ReBRACConfig.for_task("HalfCheetah-Medium-Replay-v2", batch_size=64)
    assert (cfg.actor_bc_coef, cfg.critic_bc_coef, cfg.batch_size) == (0.01, 0.001, 64)
    ant = ReBRACConfig.for_task("antmaze-large-diverse-v2")
    assert (ant.gamma, ant.actor_lr, ant.critic_lr, ant.batch_size) == (0.999, 3e-4, 5e-5, 256)
    pen = ReBRACConfig.for_task("pen-human-v1")
    assert (pen.actor_bc_coef, pen.critic_bc_coef, pen.actor_lr) == (0.1, 0.5, 3e-4)
    assert len(PAPER_DEFAULTS) == 39
    for task in PAPER_DEFAULTS:
        assert ReBRACConfig.for_task(task).actor_bc_coef == PAPER_DEFAULTS[task][0]
    with pytest.raises(KeyError, match="no paper defaults"):
        ReBRACConfig.for_task("pendulum-medium-v0")


# ---------------------------------------------------------------------- the sampler
def _episodes(discrete: bool) -> Dataset:
    """Three episodes: rows 0-2 (terminal at 2), 3-4 (timeout at 4), 5-6 (the data's end)."""
    n = 7
    actions = (
        np.arange(n, dtype=np.int64)
        if discrete
        else np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32) / 10
    )
    return Dataset(
        observations=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        actions=actions,
        rewards=np.zeros(n, np.float32),
        next_observations=np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 2,
        terminals=np.array([0, 0, 1, 0, 0, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 1, 0, 0], bool),
    )


@pytest.mark.parametrize("discrete", [False, True], ids=["packed", "per-field"])
def test_sampler_next_actions_respect_episodes(discrete: bool) -> None:
    data = _episodes(discrete)
    # The next row's action within an episode; at an episode's last row, the row's own.
    successor = np.array([1, 2, 2, 4, 4, 6, 6])
    batch = TensorSampler(data, batch_size=200, seed=0, next_actions=True).sample()
    assert batch.rows is not None and batch.next_actions is not None
    assert set(batch.rows.tolist()) == set(range(7))
    expected = torch.from_numpy(data.actions[successor[batch.rows.numpy()]])
    torch.testing.assert_close(batch.next_actions, expected, rtol=0, atol=0)
    # The rest of the batch is what the plain sampler draws with the same seed.
    plain = TensorSampler(data, batch_size=200, seed=0).sample()
    assert plain.next_actions is None
    for a, b in zip(plain[:6], batch[:6], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Batch.to carries them.
    moved = batch.to("cpu")
    assert moved.next_actions is not None and torch.equal(moved.next_actions, batch.next_actions)


def test_trainer_asks_for_next_actions(tmp_path: Any) -> None:
    from offrl.train import TrainConfig
    from offrl.train.trainer import build_run

    cfg = TrainConfig(
        algo="rebrac",
        dataset="pendulum-medium-v0",
        out=str(tmp_path),
        algo_config={"hidden": (16, 16), "batch_size": 8},
    )
    algo, sampler, *_ = build_run(cfg)
    assert ReBRAC.needs_next_actions and not TD3BC.needs_next_actions
    batch = sampler.sample()
    assert batch.next_actions is not None and batch.next_actions.shape == batch.actions.shape
    assert all(math.isfinite(v) for v in algo.update(batch).values())


def test_finetune_schedule_follows_corl() -> None:
    """CORL's fine-tuning recipe: from the first online step the critic's penalty is off, and
    the actor's BC weight is ``actor_bc_coef * max(0.5, 1 - k / N)`` at online step k + 1 of N;
    offline (before any online step) both weights are the configured ones."""
    algo = _tiny(actor_bc_coef=0.4, critic_bc_coef=0.5)
    batch = _batch(3)
    assert (algo.actor_bc_scale, algo.critic_bc_scale) == (1.0, 1.0)
    for step, scale in [(1, 1.0), (26, 0.75), (51, 0.5), (90, 0.5), (100, 0.5)]:
        algo.finetune_progress(step, 100)
        assert algo.actor_bc_scale == pytest.approx(scale) and algo.critic_bc_scale == 0.0
    # The losses use the scaled weights: the actor's at 0.4 * 0.5, the target without penalty.
    with torch.no_grad():
        pi = algo.actor(batch.obs)
        q = algo.critic(batch.obs, pi).amin(0)
        bc = ((pi - batch.actions) ** 2).sum(-1)
        expected = (0.2 * bc - q / q.abs().mean()).mean()
    torch.testing.assert_close(algo.actor_loss(batch)[0], expected, rtol=1e-5, atol=1e-6)
    state = algo.generator.get_state()
    y = algo.td_target(batch)
    algo.config.critic_bc_coef = 0.0  # TD3's target, from the same noise
    algo.generator.set_state(state)
    torch.testing.assert_close(y, algo.td_target(batch), rtol=0, atol=0)
    kept = _tiny(finetune_min_decay=1.0, finetune_critic_bc=True)
    kept.finetune_progress(100, 100)
    assert (kept.actor_bc_scale, kept.critic_bc_scale) == (1.0, 1.0)
    assert ReBRAC.finetune_mix == "ratio" and ReBRACConfig().explore_noise == 0.0
