"""MinAtar Breakout data with a known answer, for the discrete learning tests: a scripted expert
(the paddle leads the ball) and its epsilon-greedy rollouts, in episodes capped at 500 steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from offrl.data import Dataset
from offrl.envs import register_envs

ENV = "offrl-test/MinAtar-Breakout-500"  # episodes capped at 500 steps, data and evaluation


def _expert(obs: np.ndarray) -> int:
    """Lead the ball: the paddle (channel 0, bottom row) moves under the ball's next column
    (channel 1, its direction from the trail, channel 2). Actions of the minimal set: 0 no-op,
    1 left, 2 right. It returns ~11.5 a 500-step episode."""
    paddle, ball, trail = np.argwhere(obs[0]), np.argwhere(obs[1]), np.argwhere(obs[2])
    if not len(paddle) or not len(ball):
        return 0
    x = int(ball[0][1])
    if len(trail):
        x += x - int(trail[0][1])
    dx = x - int(paddle[0][1])
    return 0 if dx == 0 else (1 if dx < 0 else 2)


def _collect(episodes: int, eps: float, seed: int) -> Dataset:
    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            act = int(rng.integers(3)) if rng.random() < eps else _expert(obs)
            nxt, rew, term, trunc, _ = env.step(act)
            for k, v in zip(cols, (obs, act, rew, nxt, term, trunc), strict=True):
                cols[k].append(v)
            obs, done = nxt, term or trunc
    return Dataset.from_arrays(
        np.stack(cols["obs"]),
        np.asarray(cols["act"], dtype=np.int64),
        np.asarray(cols["rew"], dtype=np.float32),
        np.stack(cols["next"]),
        np.asarray(cols["term"]),
        np.asarray(cols["trunc"]) & ~np.asarray(cols["term"]),
        env_id=ENV,
    )


def breakout_dataset(episodes: int = 100, eps: float = 0.2, seed: int = 0) -> Dataset:
    """The scripted expert's epsilon-greedy rollouts on :data:`ENV` (registered here)."""
    register_envs()
    if ENV not in gym.registry:
        gym.register(ENV, entry_point="offrl.envs:make_minatar", kwargs={"game": "Breakout"},
                     max_episode_steps=500)  # fmt: skip
    return _collect(episodes, eps, seed)
