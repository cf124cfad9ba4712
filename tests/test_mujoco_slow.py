"""Slow checks on offrl's MuJoCo datasets (built from the shipped behaviour packs).

``pytest -m slow tests/test_mujoco_slow.py``. The first run builds ``hopper-medium-v0`` (1M
transitions, a few minutes) into the data directory; later runs reuse it. The numbers these
checks observed are recorded in ``benchmarks/results/behaviour/BEHAVIOUR.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _training import train_run

from offrl.suite.factory import MUJOCO_DATASETS, PACK_DIR

pytestmark = pytest.mark.slow


def _shipped(name: str) -> bool:
    return (PACK_DIR / MUJOCO_DATASETS[name][1]).exists()


@pytest.mark.skipif(not _shipped("hopper-medium-v0"), reason="hopper pack not shipped")
def test_td3bc_beats_behaviour_on_hopper_medium(tmp_path: Path) -> None:
    """TD3+BC at its paper defaults improves on the policy that collected hopper-medium-v0."""
    final = train_run(tmp_path, algo="td3bc", dataset="hopper-medium-v0", steps=20_000, seed=0)
    assert final["return_mean"] > final["behaviour_return_mean"], final
    assert final["normalized_score"] is not None
