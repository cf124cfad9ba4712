"""Known termination rules of environments, as functions of the model's predicted next state.

A dynamics model predicts the next observation; whether the episode ends there is, for the
MuJoCo locomotion tasks, a simple rule of the state that need not be learned. These are
OfflineRL-Kit's rules (``offlinerlkit/utils/termination_fns.py``, after the official MOPO code's
``mopo/static/*.py``), in raw (unnormalised) observation units:

* Hopper: ends unless every value is finite, every value but the height is below 100, the
  height ``obs[0] > 0.7`` and the torso angle ``|obs[1]| < 0.2``. (Kit and MOPO write
  ``np.abs(next_obs[:, 1:] < 100)``, the absolute value of a boolean: a bound from above only.
  Gymnasium's ``Hopper-v5`` ends at ``|obs[1:]| >= 100``; we follow the environment, which the
  data came from.)
* Walker2d: ends unless every value is in ``(-100, 100)``, ``0.8 < height < 2.0`` and
  ``-1 < angle < 1``.
* HalfCheetah: ends only if a value leaves ``(-100, 100)`` (the official MOPO code never ends it;
  Gymnasium never does).
* Pendulum: never ends (only the time limit cuts it).

:func:`termination_fn` finds the rule for an environment id; ``None`` means the model must learn
termination itself (the done logit of :class:`~offrl.dynamics.model.DynamicsEnsemble`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

__all__ = ["TerminationFn", "termination_fn", "KNOWN"]

TerminationFn = Callable[[torch.Tensor], torch.Tensor]
"""``next_obs [B, obs_dim]`` (raw units) -> ``done [B]`` bool."""


def _bounded(next_obs: torch.Tensor, bound: float = 100.0) -> torch.Tensor:
    return ((next_obs > -bound) & (next_obs < bound)).all(-1)


def hopper(next_obs: torch.Tensor) -> torch.Tensor:
    """Hopper's rule (Gymnasium ``Hopper-v5``'s healthy range, Kit's bounds)."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    alive = (
        torch.isfinite(next_obs).all(-1)
        & (next_obs[:, 1:].abs() < 100).all(-1)
        & (height > 0.7)
        & (angle.abs() < 0.2)
    )
    return ~alive


def walker2d(next_obs: torch.Tensor) -> torch.Tensor:
    """Walker2d's rule."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    alive = _bounded(next_obs) & (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~alive


def halfcheetah(next_obs: torch.Tensor) -> torch.Tensor:
    """HalfCheetah's rule: only a state that leaves ``(-100, 100)`` ends."""
    return ~_bounded(next_obs)


def never(next_obs: torch.Tensor) -> torch.Tensor:
    """Episodes that only the time limit ends (Pendulum)."""
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


KNOWN: dict[str, TerminationFn] = {
    "hopper": hopper,
    "walker2d": walker2d,
    "halfcheetah": halfcheetah,
    "pendulum": never,
}
"""Rules by environment family (the id's name, lower case, without version)."""


def termination_fn(env_id: str | None) -> TerminationFn | None:
    """The rule of ``env_id`` (``"Hopper-v5"``, ``"hopper-medium-v0"``, ...), or ``None``."""
    if not env_id:
        return None
    name = re.split(r"[-/_]", env_id.strip().lower().split("/")[-1])[0]
    return KNOWN.get(name)
