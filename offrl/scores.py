"""Normalised scores: ``100 * (R - R_random) / (R_expert - R_random)``.

The MuJoCo references are D4RL's (Fu et al., 2020, ``d4rl/infos.py``: ``REF_MIN_SCORE`` /
``REF_MAX_SCORE`` of the ``-v2`` locomotion datasets), keyed by environment family so that they
apply to any version of the Gymnasium environment. Pendulum's references are offrl's own
(the built-in random and expert behaviour policies' mean returns, 100 episodes each), labelled as
such. Add your own with :func:`register_reference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Reference", "REFERENCES", "register_reference", "get_reference", "normalized_score"]


@dataclass(frozen=True)
class Reference:
    """Random and expert returns of one environment family, and where they come from."""

    random: float
    expert: float
    source: str


REFERENCES: dict[str, Reference] = {
    "halfcheetah": Reference(-280.178953, 12135.0, "D4RL infos.py"),
    "hopper": Reference(-20.272305, 3234.3, "D4RL infos.py"),
    "walker2d": Reference(1.629008, 4592.3, "D4RL infos.py"),
    "ant": Reference(-325.6, 3879.7, "D4RL infos.py"),
    "pendulum": Reference(
        -1217.47, -156.05, "offrl pendulum-random-v0 / pendulum-expert-v0 mean returns (not D4RL)"
    ),
}


def _family(env_id: str) -> str:
    """``"Hopper-v5"`` -> ``"hopper"``, ``"hopper-medium-v2"`` -> ``"hopper"``."""
    base = env_id.split("/")[-1]
    base = re.split(r"[-_]", base)[0]
    return base.lower()


def register_reference(family: str, random: float, expert: float, source: str) -> None:
    """Add or replace the reference returns of an environment family (e.g. ``"ant"``)."""
    REFERENCES[family.lower()] = Reference(random, expert, source)


def get_reference(env_id: str) -> Reference | None:
    """The reference for ``env_id``'s family, or ``None`` if unknown."""
    return REFERENCES.get(_family(env_id))


def normalized_score(env_id: str, episode_return: float) -> float | None:
    """D4RL-style normalised score (0 = random, 100 = expert), or ``None`` if unknown."""
    ref = get_reference(env_id)
    if ref is None:
        return None
    return 100.0 * (episode_return - ref.random) / (ref.expert - ref.random)
