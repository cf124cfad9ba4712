"""Rolling a policy out in vectorised Gymnasium environments into a :class:`Dataset`.

The common ground of :mod:`offrl.suite.builtin` (scripted pendulum policies),
:mod:`offrl.suite.factory` (SAC behaviour policies) and :func:`noisy_rollout` (any trained
policy with epsilon-greedy noise: the second seed's noisy QR-DQN buffers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.data.dataset import Dataset
from offrl.envs import register_envs

__all__ = ["Policy", "rollout_dataset", "epsilon_greedy", "noisy_rollout"]

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``(observations [n, ...], rng) -> actions [n, action_dim]`` (a discrete space: integer
indices ``[n]``)."""


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small-batch policy inference on one thread. A second thread only adds
    synchronisation, and it stalls badly when another process holds the other core (a MinAtar
    rollout ran 14x slower on two threads beside a training run). A dataset build then also
    does not depend on how many cores the machine has."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    register_envs()  # offrl's MinAtar / Atari ids
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
    actions = np.concatenate([e["a"] for e in eps])
    discrete = np.issubdtype(actions.dtype, np.integer)  # a Discrete space's indices stay [N]
    observations = np.concatenate([e["o"] for e in eps])
    frames = observations.dtype == np.uint8  # image frames stay bytes
    return Dataset(
        observations=observations if frames else observations.astype(np.float32),
        actions=actions.astype(np.int64 if discrete else np.float32),
        rewards=np.concatenate([e["r"] for e in eps]).astype(np.float32),
        next_observations=np.concatenate([e["n"] for e in eps]).astype(
            np.uint8 if frames else np.float32
        ),
        terminals=np.concatenate([e["t"] for e in eps]).astype(bool),
        timeouts=np.concatenate([e["tr"] for e in eps]).astype(bool),
        env_id=env_id,
        metadata=dict(metadata or {}),
    )


def epsilon_greedy(algo: Algorithm, eps: float) -> Policy:
    """``algo.act``, replaced in each row with probability ``eps`` by a uniform random action
    (an index for discrete actions, a point of the action box otherwise)."""

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        act = algo.act(obs)
        coin = rng.random(len(obs)) < eps
        noise = algo.spec.uniform_actions(len(obs), rng)
        return np.where(coin if algo.spec.discrete else coin[:, None], noise, act)

    return policy


def noisy_rollout(
    algo: Algorithm,
    env_id: str,
    transitions: int,
    eps: float = 0.2,
    seed: int = 0,
    num_envs: int = 10,
    metadata: dict[str, object] | None = None,
) -> Dataset:
    """``transitions`` steps of ``algo``'s policy with epsilon-greedy noise in ``env_id``: the
    second seed's behaviour data (a QR-DQN expert, ``eps = 0.2``, 1M transitions), on one
    thread (:func:`one_thread`).

    ``metadata`` records the behaviour (``behaviour_eps``, ``behaviour_algo``) and the
    episodes' mean return (``behaviour_return_mean``, episodes cut by the budget included).
    """
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps: must be in [0, 1], got {eps}")
    meta: dict[str, object] = {
        "behaviour_algo": algo.name,
        "behaviour_eps": eps,
        "seed": seed,
        **(metadata or {}),
    }
    with one_thread():
        data = rollout_dataset(
            env_id, epsilon_greedy(algo, eps), seed=seed, num_envs=num_envs,
            transitions=transitions, metadata=meta,
        )  # fmt: skip
    data.metadata["behaviour_return_mean"] = float(data.episode_returns().mean())
    return data
