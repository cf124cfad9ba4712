"""Evaluation on the dataset's Gymnasium environment with deterministic actions."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from offrl.algos.base import Algorithm
from offrl.envs import register_envs
from offrl.scores import normalized_score

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Returns of the evaluation episodes and their D4RL-style normalised scores."""

    returns: list[float]
    lengths: list[int]
    normalized: list[float] | None
    """Per-episode normalised scores (``None`` when the environment has no reference)."""

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def normalized_mean(self) -> float | None:
        """Mean normalised score, or ``None``."""
        return None if self.normalized is None else float(np.mean(self.normalized))

    def as_dict(self) -> dict[str, float | None]:
        """Flat metrics for the loggers."""
        return {
            "eval/return_mean": self.mean,
            "eval/return_std": float(np.std(self.returns)),
            "eval/normalized_score": self.normalized_mean,
            "eval/normalized_score_std": (
                None if self.normalized is None else float(np.std(self.normalized))
            ),
            "eval/length_mean": float(np.mean(self.lengths)),
        }


def evaluate(algo: Algorithm, env_id: str, episodes: int = 10, seed: int = 0) -> EvalResult:
    """Run ``episodes`` episodes of ``algo.act`` (deterministic) in ``env_id``.

    The environments are seeded ``seed, seed + 1, ...``, independently of training, so that
    evaluation never changes what training draws (and a resumed run matches an uninterrupted one).
    All episodes run side by side in a vector environment with batched policy calls.
    """
    register_envs()  # offrl's MinAtar / Atari ids
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])  # type: ignore[arg-type]
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    active = np.ones(episodes, dtype=bool)
    while active.any():
        actions = algo.act(obs)
        obs, rew, term, trunc, _ = envs.step(actions)
        returns += rew * active
        lengths += active
        active &= ~(term | trunc)
    envs.close()
    norm = [normalized_score(env_id, float(r)) for r in returns]
    return EvalResult(
        returns=[float(r) for r in returns],
        lengths=[int(n) for n in lengths],
        normalized=None if norm[0] is None else [float(x) for x in norm if x is not None],
    )
