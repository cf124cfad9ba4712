"""Saved simulator state (offrl.train.envstate): a restored vector environment steps exactly
as the original, episode resets included, through a weights_only checkpoint round trip."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.train.envstate import restore_env_state, save_env_state


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5"])
def test_restored_environments_step_identically(env_id: str) -> None:
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = (2, *envs.single_action_space.shape)
    actions = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(400)]
    for a in actions[:150]:
        envs.step(a)
    buf = io.BytesIO()
    torch.save(save_env_state(envs), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = [envs.step(a) for a in actions[150:]]
    fresh = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    fresh.reset(seed=123)  # another start: everything that matters comes from the state
    restore_env_state(fresh, state)
    got = [fresh.step(a) for a in actions[150:]]
    resets = 0
    for e, g in zip(expected, got, strict=True):
        for x, y in zip(e[:4], g[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        resets += int(e[2].sum() + e[3].sum())
    assert resets >= 1  # the comparison crossed episode ends and autoresets


def test_unknown_environments_are_not_saved() -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    envs.reset(seed=0)
    assert save_env_state(envs) is not None  # classic control: a state array

    class Opaque:  # an environment without a known state
        envs = [gym.make("CartPole-v1")]

    Opaque.envs[0].reset(seed=0)
    Opaque.envs[0].unwrapped.state = None
    assert save_env_state(Opaque()) is None
