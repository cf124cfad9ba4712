"""The discrete-control environments offrl registers with Gymnasium: MinAtar and Atari.

Nothing is registered by importing a module. :func:`register_envs` registers every id below once,
and offrl's loops call it before they make an environment. A user can call it too, before
``gym.make`` of their own.

* ``offrl/MinAtar-<Game>-v1`` (Young & Tian, 2019): Asterix, Breakout, Freeway, Seaquest and
  SpaceInvaders with their minimal action sets. Observations are ``uint8 [C, 10, 10]`` of 0 and
  255 (MinAtar's ``[10, 10, C]`` booleans, channels first for the CNN). Needs ``minatar``.
* ``offrl/Atari-<Game>-v0``: the ALE game (``ale-py``) under the standard DQN preprocessing of
  the second seed's Tianshou setup (its ``*NoFrameskip-v4`` ids). That means up to 30 no-op steps
  at reset, a frame skip of 4 with a max over the last two frames, 84 × 84 grey frames, 4 of them
  stacked (``uint8 [4, 84, 84]``), sticky actions off (``repeat_action_probability=0``), and at
  most 108,000 frames (27,000 steps) per episode. ``episodic_life=True`` ends an episode at each
  lost life; the game then continues on the next reset, as DQN's training does. Evaluation keeps
  it off. ``clip_rewards=True`` gives the sign of each reward. Every ALE game can be made this
  way; offrl registers the seed's (:data:`ATARI_GAMES`), and :func:`atari_id` registers any other.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["register_envs", "MINATAR_GAMES", "ATARI_GAMES", "atari_id", "make_atari"]

MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
"""MinAtar's five games."""
ATARI_GAMES = ("Breakout", "Pong", "SpaceInvaders", "Seaquest", "Qbert", "Asterix", "Freeway")
"""The Atari games registered by :func:`register_envs` (the seed's tables and MinAtar's)."""

_MINATAR_NAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}


class _ChannelsFirst(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """MinAtar's ``bool [10, 10, C]`` state as ``uint8 [C, 10, 10]`` frames of 0 and 255 (bytes
    as Atari's frames are, so one encoder, which scales bytes by 1/255, reads both)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape  # type: ignore[misc]
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frames = np.transpose(observation, (2, 0, 1)).astype(np.uint8) * np.uint8(255)
        return np.ascontiguousarray(frames)


def make_minatar(game: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """MinAtar's ``game`` (a :data:`MINATAR_GAMES` name), minimal action set, channels first."""
    try:
        from minatar.gym import BaseEnv
    except ImportError as exc:
        raise ImportError(
            "MinAtar environments need the minatar package: pip install 'offrl[discrete]'"
        ) from exc
    return _ChannelsFirst(BaseEnv(_MINATAR_NAMES[game], use_minimal_action_set=True, **kwargs))


class _EpisodicLife(gym.Wrapper[np.ndarray, int, np.ndarray, int]):
    """A lost life ends the episode (``terminated``); the next ``reset`` continues the game
    with a no-op step unless the game itself was over (DQN's training recipe)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: int) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> Any:
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]
        self.game_over = False
        return obs, info


def make_atari(
    game: str, episodic_life: bool = False, clip_rewards: bool = False, **kwargs: Any
) -> gym.Env[Any, Any]:
    """The ALE's ``game`` under DQN's preprocessing (see the module docstring)."""
    try:
        import ale_py
    except ImportError as exc:
        raise ImportError("Atari environments need ale-py: pip install 'offrl[discrete]'") from exc
    gym.register_envs(ale_py)
    env = gym.make(
        f"ALE/{game}-v5",
        frameskip=1,  # the preprocessing skips frames (and max-pools the last two)
        repeat_action_probability=0.0,  # sticky actions off, as the seed's v4 ids
        full_action_space=False,
        max_num_frames_per_episode=108_000,
        **kwargs,
    )
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
    )
    if episodic_life:
        env = _EpisodicLife(env)
    if clip_rewards:
        env = gym.wrappers.TransformReward(env, _sign)
    return gym.wrappers.FrameStackObservation(env, 4)


def _sign(reward: Any) -> float:
    """DQN's reward clipping: -1, 0 or 1."""
    return float(np.sign(float(reward)))


def atari_id(game: str) -> str:
    """The id of ``game`` under DQN's preprocessing, registered if it was not."""
    env_id = f"offrl/Atari-{game}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="offrl.envs:make_atari", kwargs={"game": game})
    return env_id


def register_envs() -> list[str]:
    """Register offrl's MinAtar and Atari ids with Gymnasium (idempotent); returns them.

    Making one still needs its package (``minatar``, ``ale-py``: ``pip install
    'offrl[discrete]'``); registering does not.
    """
    ids = []
    for game in MINATAR_GAMES:
        env_id = f"offrl/MinAtar-{game}-v1"
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="offrl.envs:make_minatar", kwargs={"game": game})
        ids.append(env_id)
    ids += [atari_id(game) for game in ATARI_GAMES]
    return ids
