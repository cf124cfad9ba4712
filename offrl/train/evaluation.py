"""Evaluation on the dataset's Gymnasium environment with deterministic actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from offrl.algos.base import Algorithm
from offrl.envs import register_envs
from offrl.scores import normalized_score

if TYPE_CHECKING:
    from offrl.train.loggers import MetricLogger

__all__ = ["EvalResult", "evaluate", "final_evaluation", "logged_final_evaluation"]


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


FINAL_EVAL_CHUNK = 100
"""Episodes of the final evaluation run side by side in one vector environment."""


def final_evaluation(algo: Algorithm, env_id: str, episodes: int, seed: int) -> dict[str, Any]:
    """The final evaluation of ``algo``: ``episodes`` episodes in ``env_id``, seeded ``seed,
    seed + 1, ...`` (run :data:`FINAL_EVAL_CHUNK` at a time), as ``final.json`` stores it.

    Returns ``{"episodes", "seed", "returns": [...], "normalized": [...] or None,
    "return_mean", "return_std", "normalized_mean", "normalized_std", "length_mean"}``: every
    episode's return and D4RL-normalised score (``None`` without reference returns), so that
    confidence intervals and policy selection (:mod:`offrl.bench.selection`) can resample them.
    """
    returns: list[float] = []
    normalized: list[float] | None = []
    lengths: list[int] = []
    for first in range(0, episodes, FINAL_EVAL_CHUNK):
        part = evaluate(algo, env_id, min(FINAL_EVAL_CHUNK, episodes - first), seed=seed + first)
        returns += part.returns
        lengths += part.lengths
        normalized = None if part.normalized is None else [*(normalized or []), *part.normalized]
    return {
        "episodes": episodes,
        "seed": seed,
        "returns": returns,
        "normalized": normalized,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "normalized_mean": None if normalized is None else float(np.mean(normalized)),
        "normalized_std": None if normalized is None else float(np.std(normalized)),
        "length_mean": float(np.mean(lengths)),
    }


def logged_final_evaluation(
    algo: Algorithm, env_id: str, episodes: int, seed: int, logger: MetricLogger, step: int
) -> dict[str, Any] | None:
    """:func:`final_evaluation` at the end of a run (``None`` when ``episodes`` is 0), logged
    once as a ``final_eval`` record at ``step``. It runs after the run's last checkpoint, so a
    run killed during it resumes at the end and does it again, without logging it twice."""
    if episodes <= 0:
        return None
    result = final_evaluation(algo, env_id, episodes, seed)
    if logger.logged(step, "final_eval") is None:
        scalars = {f"final_eval/{k}": v for k, v in result.items() if not isinstance(v, list)}
        logger.log(step, "final_eval", scalars)
    return result
