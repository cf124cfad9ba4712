"""Preprocessing: observation normalisation and reward transforms.

Observation normalisation is on by default (as in TD3+BC and the second seed's library): the mean
and standard deviation come from the dataset, are stored in the algorithm (and so in every
checkpoint), and are applied inside ``Algorithm.act`` -- a deployed policy takes raw observations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset, EpisodeStructure

__all__ = ["ObsNormalizer", "RewardTransform", "preprocess"]


@dataclass(frozen=True)
class ObsNormalizer:
    """``(obs - mean) / std`` with ``std`` floored at ``eps`` (constant features stay finite)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: Dataset, eps: float = 1e-3) -> ObsNormalizer:
        """Statistics over the dataset's observations (the TD3+BC recipe, ``eps`` = 1e-3)."""
        obs = dataset.observations.astype(np.float64)
        return cls(
            mean=obs.mean(axis=0).astype(np.float32),
            std=(obs.std(axis=0) + eps).astype(np.float32),
        )

    @classmethod
    def identity(cls, obs_shape: tuple[int, ...]) -> ObsNormalizer:
        """A normaliser that changes nothing (``--norm-obs 0``)."""
        return cls(np.zeros(obs_shape, np.float32), np.ones(obs_shape, np.float32))

    @classmethod
    def for_run(cls, dataset: Dataset, normalize: bool) -> ObsNormalizer:
        """What a run with ``norm_obs = normalize`` uses: :meth:`from_dataset`, or
        :meth:`identity`."""
        return cls.from_dataset(dataset) if normalize else cls.identity(dataset.obs_shape)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.mean) / self.std).astype(np.float32)


@dataclass(frozen=True)
class RewardTransform:
    """``r' = scale * r + shift``, optionally after dividing by the dataset's return range.

    ``mode="return_range"`` is IQL's locomotion recipe (Kostrikov et al., 2021):
    ``r / (max_episode_return - min_episode_return) * 1000``, then ``scale``/``shift``.
    """

    mode: str = "none"
    scale: float = 1.0
    shift: float = 0.0

    def affine(self, dataset: EpisodeStructure) -> tuple[float, float]:
        """``(a, b)`` with ``r' = a * r + b`` for ``dataset`` (its return range fixes ``a`` in
        ``return_range`` mode): what :meth:`apply` does, for rewards that arrive later (online
        fine-tuning)."""
        a = self.scale
        if self.mode == "return_range":
            rets = dataset.episode_returns()
            span = float(rets.max() - rets.min())
            a = 1000.0 / max(span, 1e-8) * self.scale
        elif self.mode != "none":
            raise ValueError(f"reward mode: unknown {self.mode!r} (use 'none' or 'return_range')")
        return a, self.shift

    def apply(self, dataset: EpisodeStructure) -> np.ndarray:
        """The transformed reward array."""
        a, b = self.affine(dataset)
        return (dataset.rewards.astype(np.float64) * a + b).astype(np.float32)


def preprocess(
    dataset: Dataset,
    normalizer: ObsNormalizer,
    rewards: RewardTransform | None = None,
    action_low: Any = None,
    action_high: Any = None,
) -> Dataset:
    """A copy of ``dataset`` ready for training.

    Observations are normalised, rewards transformed, and continuous actions mapped from
    ``[low, high]`` to ``[-1, 1]`` (algorithms always work in the unit box; ``Algorithm.act``
    maps back).
    """
    obs = dataset.observations
    new: dict[str, Any] = {
        "observations": normalizer(obs) if obs.dtype != np.uint8 else obs,
        "next_observations": (
            normalizer(dataset.next_observations)
            if obs.dtype != np.uint8
            else dataset.next_observations
        ),
    }
    if rewards is not None:
        new["rewards"] = rewards.apply(dataset)
    if not dataset.discrete and action_low is not None and action_high is not None:
        low = np.asarray(action_low, np.float32)
        high = np.asarray(action_high, np.float32)
        scaled = 2.0 * (dataset.actions - low) / (high - low) - 1.0
        new["actions"] = np.clip(scaled, -1.0, 1.0).astype(np.float32)
    return replace(dataset, **new)
