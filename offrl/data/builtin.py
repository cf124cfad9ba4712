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
deterministic. They are written in offrl's ``.npz`` format under :func:`data_dir` and reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from offrl.data.dataset import Dataset

__all__ = ["BUILTIN", "data_dir", "make_builtin", "pendulum_expert", "rollout_dataset"]

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def data_dir() -> Path:
    """Where built datasets are cached: ``$OFFRL_DATA_DIR``, else ``$XDG_DATA_HOME/offrl``,
    else ``~/.local/share/offrl``."""
    if "OFFRL_DATA_DIR" in os.environ:
        return Path(os.environ["OFFRL_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "offrl"


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


def rollout_dataset(
    env_id: str,
    policy: Policy,
    episodes: int | None = None,
    seed: int = 0,
    num_envs: int = 10,
    metadata: dict[str, object] | None = None,
    transitions: int | None = None,
) -> Dataset:
    """Roll ``policy`` out in ``num_envs`` vectorised envs: ``episodes`` complete episodes, or
    exactly ``transitions`` transitions.

    Episodes are stored contiguously (env by env), terminations as terminals and time-limit
    truncations as timeouts, with true ``next_observations`` (the final observation of a
    truncated episode, not the reset observation). With ``transitions``, collection stops as soon
    as that many are stored, and the episodes still running are stored as truncated (timeouts),
    as D4RL's fixed-size datasets end.
    """
    if (episodes is None) == (transitions is None):
        raise ValueError("give exactly one of episodes and transitions")
    if episodes is not None and episodes % num_envs:
        raise ValueError("episodes must be a multiple of num_envs")
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    rng = np.random.default_rng(seed)
    per_env: list[list[dict[str, np.ndarray]]] = [[] for _ in range(num_envs)]
    obs, _ = envs.reset(seed=seed)
    done_eps = np.zeros(num_envs, dtype=int)
    target = episodes // num_envs if episodes is not None else np.iinfo(np.int64).max
    current: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(num_envs)]
    stored = 0

    def close(i: int) -> None:
        o, a, r, n, t, tr = (np.array(x) for x in zip(*current[i], strict=True))
        per_env[i].append({"o": o, "a": a, "r": r, "n": n, "t": t, "tr": tr & ~t})
        current[i] = []

    # SAME_STEP autoreset would hide the final observation; NEXT_STEP (the default) means the
    # step after an episode end is a reset step whose transition is discarded.
    skip = np.zeros(num_envs, dtype=bool)
    while (done_eps < target).any() and (transitions is None or stored < transitions):
        actions = policy(obs, rng)
        next_obs, rew, term, trunc, _ = envs.step(actions)
        for i in range(num_envs):
            if skip[i]:
                skip[i] = False
                continue
            if done_eps[i] >= target or (transitions is not None and stored >= transitions):
                continue
            current[i].append((obs[i], actions[i], rew[i], next_obs[i], term[i], trunc[i]))
            stored += 1
            if term[i] or trunc[i]:
                close(i)
                done_eps[i] += 1
                skip[i] = True
        obs = next_obs
    envs.close()
    for i in range(num_envs):
        if current[i]:  # cut by the transition budget: a truncation
            current[i][-1] = (*current[i][-1][:5], np.array(True))
            close(i)
    eps = [ep for env_eps in per_env for ep in env_eps]
    return Dataset(
        observations=np.concatenate([e["o"] for e in eps]).astype(np.float32),
        actions=np.concatenate([e["a"] for e in eps]).astype(np.float32),
        rewards=np.concatenate([e["r"] for e in eps]).astype(np.float32),
        next_observations=np.concatenate([e["n"] for e in eps]).astype(np.float32),
        terminals=np.concatenate([e["t"] for e in eps]).astype(bool),
        timeouts=np.concatenate([e["tr"] for e in eps]).astype(bool),
        env_id=env_id,
        metadata=dict(metadata or {}),
    )


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

    MuJoCo names (``hopper-medium-v0``...) are built by :mod:`offrl.data.factory`.
    Raises ``KeyError`` for an unknown name.
    """
    from offrl.data.factory import MUJOCO_DATASETS, make_mujoco

    if name in MUJOCO_DATASETS:
        return make_mujoco(name, rebuild=rebuild)
    if name not in BUILTIN:
        raise KeyError(f"unknown built-in dataset {name!r}; available: {sorted(BUILTIN)}")
    from offrl.data.loaders import load_npz, save_npz

    path = data_dir() / "datasets" / f"{name}.npz"
    if path.exists() and not rebuild:
        return load_npz(path)
    ds = _build(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(ds, path)
    return ds
