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


def test_awac_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """AWAC (CORL defaults) improves on the behaviour policy."""
    final = _train(tmp_path, algo="awac", dataset="pendulum-medium-v0", steps=2000, seed=0)
    # Observed: -324 at 1000 steps, -168 at 2000, -138 at 3000, from data that averages -528.
    assert final["return_mean"] > final["behaviour_return_mean"] + 150, final


def test_crr_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """CRR (d3rlpy defaults, soft target updates) improves on the behaviour policy."""
    final = _train(tmp_path, algo="crr", dataset="pendulum-medium-v0", steps=2000, seed=0)
    # Observed: -431 at 1000 steps, -181 at 2000, from data that averages -528.
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


# CQL is ~20x the FLOPs of TD3+BC per update (the critic also scores 3 * num_samples sampled
# actions per state): about 1 update/s with the paper's networks on this 2-core CPU. The learning
# tests therefore use smaller networks, batch and sample counts and SAC's actor learning rate.
CQL_SMALL = {
    "hidden": (128, 128),
    "batch_size": 128,
    "num_samples": 4,
    "actor_lr": 3e-4,
    "alpha_lr": 3e-4,
    "cql_alpha": 5.0,
}


def _last_train_record(run: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("kind") == "train"][-1]


def test_cql_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """CQL (small networks, see CQL_SMALL) improves on the pendulum-medium-v0 behaviour policy.

    Observed: -138 (normalised 102) at 3000 steps, from data that averages -528; the whole
    ``offrl train`` command took 57 s on the project's 2-core machine.
    """
    final = _train(
        tmp_path,
        algo="cql",
        dataset="pendulum-medium-v0",
        steps=3000,
        seed=0,
        algo_config=CQL_SMALL,
    )
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


@pytest.mark.slow
def test_cql_q_values_stay_below_naive_sac(tmp_path: Path) -> None:
    """The conservative penalty keeps Q on dataset actions below naive offline SAC's.

    Pendulum rewards are all <= 0, so any Q > 0 is overestimation. The same model with
    ``cql_alpha=0`` (SAC on the offline data) bootstraps from out-of-distribution actions and
    its Q-estimate should drift above CQL's. NOT YET VERIFIED at this budget: after 1000 steps
    the Q-values were still far from converged (CQL -7.2, SAC -10.0; SAC's policy returned -1348
    at 1500 steps), so no separation shows in a fast run; 10,000 steps is a guess.
    """
    q = {}
    for name, weight in (("cql", 5.0), ("sac", 0.0)):
        _train(
            tmp_path / name,
            algo="cql",
            dataset="pendulum-medium-v0",
            steps=10_000,
            seed=0,
            algo_config={**CQL_SMALL, "cql_alpha": weight},
        )
        q[name] = _last_train_record(tmp_path / name / "run")["q_mean"]
    assert q["cql"] < 0.0, q
    assert q["sac"] > q["cql"] + 1.0, q
