"""offrl's discrete-control environments: MinAtar channels-first, Atari under DQN's
preprocessing (frame skip 4, 84 x 84 grey, 4 stacked, no-op starts, sticky actions off,
episodic life and reward clipping on request), registered explicitly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offrl.envs import ATARI_GAMES, MINATAR_GAMES, atari_id, register_envs

minatar = pytest.importorskip("minatar")
ale_py = pytest.importorskip("ale_py")
pytest.importorskip("cv2")


def test_nothing_is_registered_by_import_alone() -> None:
    """Registration is an explicit call (idempotent) that returns the ids."""
    ids = register_envs()
    assert ids == register_envs()
    assert len(ids) == len(MINATAR_GAMES) + len(ATARI_GAMES)
    assert all(i in gym.registry for i in ids)


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_minatar_games_are_channels_first_and_seeded(game: str) -> None:
    register_envs()
    env = gym.make(f"offrl/MinAtar-{game}-v1")
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.uint8 and obs.shape == env.observation_space.shape
    assert obs.shape[1:] == (10, 10) and set(np.unique(obs)) <= {0, 255}
    raw = minatar.Environment(game.lower() if game != "SpaceInvaders" else "space_invaders")
    assert obs.shape[0] == raw.state_shape()[2]
    assert env.action_space.n == len(raw.minimal_action_set())
    trace = []
    for _ in range(2):  # the same seed, the same episode
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        states = [obs]
        for _ in range(30):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            states.append(obs)
            if terminated or truncated:
                break
        trace.append(np.stack(states))
    assert np.array_equal(trace[0], trace[1])
    env.close()


def test_atari_preprocessing() -> None:
    env = gym.make(atari_id("Breakout"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0  # sticky actions off
    before = ale.getEpisodeFrameNumber()
    obs, *_ = env.step(1)
    assert ale.getEpisodeFrameNumber() - before == 4  # frame skip 4
    newest = obs[-1].copy()
    obs2, *_ = env.step(0)
    assert np.array_equal(obs2[-2], newest)  # the previous newest frame moved back one slot
    env.close()


def test_episodic_life_ends_episodes_at_a_lost_life_and_continues_the_game() -> None:
    env = gym.make(atari_id("Breakout"), episodic_life=True, clip_rewards=True)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    lives, rewards = ale.lives(), []
    for _ in range(5000):  # firing then idling loses the ball soon
        obs, reward, terminated, truncated, _ = env.step(1)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and ale.lives() == lives - 1 > 0  # a life lost, the game not over
    assert set(rewards) <= {-1.0, 0.0, 1.0}
    frame = ale.getEpisodeFrameNumber()
    env.reset()
    assert ale.getEpisodeFrameNumber() > frame  # the same game goes on (no new game)
    plain = gym.make(atari_id("Breakout"))
    plain.reset(seed=0)
    for _ in range(5000):
        *_, terminated, truncated, _ = plain.step(1)
        if terminated or truncated:
            break
    assert plain.unwrapped.ale.lives() == 0  # without episodic life: the whole game
    env.close()
    plain.close()
