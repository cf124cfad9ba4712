"""Built-in small datasets, made locally in seconds and cached.

``pendulum-{random,medium,expert,medium-expert}-v0`` are offrl's own datasets on Gymnasium's
``Pendulum-v1`` (they are not D4RL's). The behaviour policies have known quality:

* ``expert`` -- an energy-pumping swing-up controller with a PD stabiliser at the top
  (about -130 average return; a well-trained SAC reaches about -150);
* ``medium`` -- the expert, but each action is replaced by a uniform random one with
  probability 0.5 (about -550);
* ``random`` -- uniform random actions (about -1180);
* ``medium-expert`` -- ``medium`` followed by ``expert``.

Each dataset is 100 episodes of 200 steps (20,000 transitions) ending in time-limit truncations,
generated with 10 vectorised environments seeded from the dataset's seed, so a build is
deterministic. They are written in offrl's ``.npz`` format under
:func:`offrl.data.registry.data_dir` and reused.

:func:`make_builtin` also resolves the MuJoCo names of :mod:`offrl.suite.factory`; importing
:mod:`offrl.suite` registers it with :func:`offrl.data.register_dataset_resolver`, which is how
``offrl.data.load_dataset("pendulum-medium-v0")`` finds these datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.loaders import load_npz, save_npz
from offrl.data.registry import data_dir, report_progress
from offrl.suite.factory import MUJOCO_DATASETS, make_mujoco
from offrl.suite.minatar import MINATAR_DATASETS, make_minatar
from offrl.suite.rollout import Policy, rollout_dataset

__all__ = ["BUILTIN", "BuiltinSpec", "make_builtin", "pendulum_expert"]


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Swing-up by energy pumping, then PD control near the top. ``[n, 3] -> [n, 1]`` torques.

    Pendulum-v1 has ``theta'' = 1.5 g sin(theta) + 3 u`` (g = 10, theta = 0 upright), which
    conserves ``E = theta'^2 / 2 + 15 cos(theta)``; ``dE/dt = 3 u theta'``, so pushing along
    ``theta'`` adds energy until ``E`` reaches the upright value 15.
    """
    cos, sin, thdot = obs[:, 0], obs[:, 1], obs[:, 2]
    theta = np.arctan2(sin, cos)
    energy = 0.5 * thdot**2 + 15.0 * cos
    pump = np.clip(0.5 * (15.0 - energy) * np.sign(thdot + 1e-6), -2.0, 2.0)
    pd = np.clip(-(10.0 * theta + 2.0 * thdot), -2.0, 2.0)
    return np.where(cos > 0.8, pd, pump)[:, None].astype(np.float32)


def _epsilon(policy: Callable[[np.ndarray], np.ndarray], eps: float) -> Policy:
    def act(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = policy(obs)
        rand = rng.uniform(-2.0, 2.0, size=a.shape).astype(np.float32)
        return np.where(rng.random((a.shape[0], 1)) < eps, rand, a)

    return act


@dataclass(frozen=True)
class BuiltinSpec:
    """How to make one built-in dataset."""

    env_id: str
    policies: tuple[tuple[str, float, int], ...]
    """``(behaviour name, epsilon, seed)`` parts, concatenated in order."""
    episodes: int = 100


BUILTIN: dict[str, BuiltinSpec] = {
    "pendulum-random-v0": BuiltinSpec("Pendulum-v1", (("random", 1.0, 0),)),
    "pendulum-medium-v0": BuiltinSpec("Pendulum-v1", (("medium", 0.5, 1),)),
    "pendulum-expert-v0": BuiltinSpec("Pendulum-v1", (("expert", 0.0, 2),)),
    "pendulum-medium-expert-v0": BuiltinSpec(
        "Pendulum-v1", (("medium", 0.5, 1), ("expert", 0.0, 2))
    ),
}
"""Registry of built-in dataset names. Other modules may add entries."""


def _build(name: str) -> Dataset:
    spec = BUILTIN[name]
    parts = []
    for behaviour, eps, seed in spec.policies:
        part = rollout_dataset(
            spec.env_id,
            _epsilon(pendulum_expert, eps),
            spec.episodes,
            seed=seed,
            metadata={"behaviour": behaviour, "epsilon": eps, "seed": seed},
        )
        parts.append(part)
    rets = np.concatenate([p.episode_returns() for p in parts])
    meta = {
        "name": name,
        "source": "offrl built-in (not D4RL)",
        "env_id": spec.env_id,
        "behaviour": "+".join(p[0] for p in spec.policies),
        "behaviour_return_mean": float(rets.mean()),
        "seeds": [p[2] for p in spec.policies],
        "gymnasium_version": gym.__version__,
    }
    ds = parts[0] if len(parts) == 1 else Dataset.concatenate(parts)
    return _with_meta(ds, meta)


def _with_meta(ds: Dataset, meta: dict[str, object]) -> Dataset:
    ds.metadata = {**ds.metadata, **meta}
    ds.env_id = str(meta["env_id"])
    return ds


def make_builtin(name: str, rebuild: bool = False) -> Dataset:
    """Load the built-in dataset ``name``, building and caching it on first use.

    MuJoCo names (``hopper-medium-v0``...) are built by :mod:`offrl.suite.factory`, MinAtar
    names (``minatar-breakout-noisy-v0``...) by :mod:`offrl.suite.minatar`.
    Raises ``KeyError`` for an unknown name.
    """
    if name in MUJOCO_DATASETS:
        return make_mujoco(name, rebuild=rebuild)
    if name in MINATAR_DATASETS:
        return make_minatar(name, rebuild=rebuild)
    if name not in BUILTIN:
        known = sorted(BUILTIN) + sorted(MUJOCO_DATASETS) + sorted(MINATAR_DATASETS)
        raise KeyError(f"unknown built-in dataset {name!r}; available: {known}")
    path = data_dir() / "datasets" / f"{name}.npz"
    if path.exists() and not rebuild:
        return load_npz(path)
    report_progress(f"building {name} (first use; cached in {path})")
    ds = _build(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(ds, path)
    return ds
