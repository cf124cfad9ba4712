"""Saving and restoring the simulators of a vector environment, so that online training resumes
exactly where it was killed.

Gymnasium has no generic ``get_state``. This module knows two families, which cover what offrl
trains online: MuJoCo environments (``qpos``, ``qvel``, ``act``, ``time`` and the solver's warm
start ``qacc_warmstart`` of ``data``) and classic-control environments with a ``state`` array
(Pendulum, ...). For each sub-environment it also keeps the environment's random generator and
the ``TimeLimit`` step count, and for the vector environment which sub-environments reset on
their next step. Everything is tensors, numbers and JSON strings, so a checkpoint holding it
still loads with ``weights_only=True``. :func:`save_env_state` returns ``None`` for any other
environment; the online loop then falls back to ending the episodes in flight.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

__all__ = ["save_env_state", "restore_env_state"]

_MUJOCO_FIELDS = ("qpos", "qvel", "act", "qacc_warmstart")


def _wrappers(env: Any) -> list[Any]:
    out = [env]
    while hasattr(out[-1], "env"):
        out.append(out[-1].env)
    return out


def _one(env: Any) -> dict[str, Any] | None:
    base = env.unwrapped
    entry: dict[str, Any] = {"np_random": json.dumps(base.np_random.bit_generator.state)}
    data = getattr(base, "data", None)
    if data is not None and hasattr(base, "set_state") and hasattr(data, "qpos"):
        entry["kind"] = "mujoco"
        for name in _MUJOCO_FIELDS:
            entry[name] = torch.from_numpy(np.array(getattr(data, name), dtype=np.float64))
        entry["time"] = float(data.time)
    elif isinstance(getattr(base, "state", None), np.ndarray | list | tuple):
        entry["kind"] = "array"
        entry["state"] = torch.from_numpy(np.array(base.state, dtype=np.float64))
        entry["state_dtype"] = str(np.asarray(base.state).dtype)
    else:
        return None
    for w in _wrappers(env):
        if type(w).__name__ == "TimeLimit":
            entry["elapsed_steps"] = int(w._elapsed_steps or 0)
    return entry


def save_env_state(envs: Any) -> dict[str, Any] | None:
    """The state of every sub-environment of a Gymnasium ``SyncVectorEnv``, or ``None`` when
    one of them is of a kind this module cannot save."""
    subs = getattr(envs, "envs", None)
    if subs is None:
        return None
    entries = [_one(env) for env in subs]
    if any(e is None for e in entries):
        return None
    autoreset = getattr(envs, "_autoreset_envs", None)
    return {
        "envs": entries,
        "autoreset": torch.from_numpy(np.array(autoreset, dtype=bool))
        if autoreset is not None
        else None,
    }


def restore_env_state(envs: Any, state: dict[str, Any]) -> None:
    """Put :func:`save_env_state` output back into a freshly reset vector environment of the
    same kind (raises ``ValueError`` if the kinds or sizes differ)."""
    entries = state["envs"]
    if len(entries) != len(envs.envs):
        raise ValueError(f"saved {len(entries)} environments, the run has {len(envs.envs)}")
    for env, entry in zip(envs.envs, entries, strict=True):
        base = env.unwrapped
        base.np_random.bit_generator.state = json.loads(entry["np_random"])
        if entry["kind"] == "mujoco":
            base.set_state(entry["qpos"].numpy(), entry["qvel"].numpy())
            base.data.act[:] = entry["act"].numpy()
            base.data.qacc_warmstart[:] = entry["qacc_warmstart"].numpy()
            base.data.time = entry["time"]
        elif entry["kind"] == "array":
            base.state = entry["state"].numpy().astype(entry["state_dtype"])
        else:
            raise ValueError(f"unknown saved environment kind {entry['kind']!r}")
        for w in _wrappers(env):
            if type(w).__name__ == "TimeLimit" and "elapsed_steps" in entry:
                w._elapsed_steps = entry["elapsed_steps"]
    if state.get("autoreset") is not None and hasattr(envs, "_autoreset_envs"):
        envs._autoreset_envs = state["autoreset"].numpy().copy()
