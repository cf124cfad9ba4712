"""Learning tests: the algorithms actually learn on the built-in Pendulum datasets.

Reference returns (offrl's own built-in data, 100 episodes each): random about -1217, the
``pendulum-medium-v0`` behaviour policy -528, the expert -156. Runs are deterministic for a seed
on a given machine; the thresholds below leave headroom of about 60 or more return points over
what was observed (recorded next to each assertion) so that floating-point differences between
machines or PyTorch builds do not flip them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from offrl.scores import get_reference
from offrl.train import TrainConfig, train

RANDOM_RETURN = -1217.47  # mean return of pendulum-random-v0 (offrl's reference)


def _train(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        eval_every=0,  # one evaluation, at the end
        eval_episodes=10,
        log_every=500,
        checkpoint_every=10**9,  # only the final checkpoint
        progress=False,
        **kw,
    )
    final = train(cfg)
    assert json.loads((tmp_path / "run" / "final.json").read_text()) == final
    return final


def test_reference_returns() -> None:
    ref = get_reference("Pendulum-v1")
    assert ref is not None
    assert ref.random == pytest.approx(RANDOM_RETURN)


def test_td3bc_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """TD3+BC (paper defaults) improves on the policy that collected pendulum-medium-v0."""
    final = _train(tmp_path, algo="td3bc", dataset="pendulum-medium-v0", steps=3000, seed=0)
    behaviour = final["behaviour_return_mean"]
    assert behaviour == pytest.approx(-528, abs=15)
    # Observed: -367 for seed 0 (-346 and -269 for seeds 1 and 2); 2000 steps is not enough.
    assert final["return_mean"] > behaviour + 100, final


def test_bc_reaches_expert_on_expert_data(tmp_path: Path) -> None:
    final = _train(tmp_path, algo="bc", dataset="pendulum-expert-v0", steps=1000, seed=0)
    assert final["behaviour_return_mean"] == pytest.approx(-156, abs=15)
    # Observed: -123 (normalised score 103).
    assert final["return_mean"] > -300, final
    assert final["normalized_score"] > 85, final


def test_bc_beats_random_on_medium_data(tmp_path: Path) -> None:
    final = _train(tmp_path, algo="bc", dataset="pendulum-medium-v0", steps=1000, seed=0)
    # Observed: -232 (cloning the epsilon-expert's mean action removes most of its noise).
    assert final["return_mean"] > RANDOM_RETURN + 500, final


def test_iql_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """IQL (paper defaults, return-range reward scaling) improves on the behaviour policy."""
    final = _train(tmp_path, algo="iql", dataset="pendulum-medium-v0", steps=3000, seed=0)
    # Observed: -191 (normalised 97) at 3000 steps, from data that averages -528.
    assert final["return_mean"] > final["behaviour_return_mean"] + 150, final


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_td3bc_medium_long(tmp_path: Path, seed: int) -> None:
    """Longer TD3+BC runs on two seeds (about 2-2.5 minutes each on 1 CPU thread)."""
    final = _train(tmp_path, algo="td3bc", dataset="pendulum-medium-v0", steps=10_000, seed=seed)
    # Observed: -136 (seed 0) and -134 (seed 1): expert level, from data that averages -528.
    assert final["return_mean"] > -250, final


@pytest.mark.slow
def test_td3bc_medium_expert_long(tmp_path: Path) -> None:
    final = _train(tmp_path, algo="td3bc", dataset="pendulum-medium-expert-v0", steps=10_000)
    assert final["behaviour_return_mean"] == pytest.approx(-342, abs=15)
    # Observed: -136.
    assert final["return_mean"] > -250, final
