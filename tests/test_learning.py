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
from _devices import DEVICES
from _training import CQL_SMALL, train_run

from offrl.scores import get_reference

RANDOM_RETURN = -1217.47  # mean return of pendulum-random-v0 (offrl's reference)


_train = train_run


def test_reference_returns() -> None:
    ref = get_reference("Pendulum-v1")
    assert ref is not None
    assert ref.random == pytest.approx(RANDOM_RETURN)


@pytest.mark.parametrize("device", DEVICES)
def test_td3bc_beats_behaviour_on_medium(tmp_path: Path, device: str) -> None:
    """TD3+BC (paper defaults) improves on the policy that collected pendulum-medium-v0."""
    final = _train(
        tmp_path, algo="td3bc", dataset="pendulum-medium-v0", steps=3000, seed=0, device=device
    )
    behaviour = final["behaviour_return_mean"]
    assert behaviour == pytest.approx(-528, abs=15)
    # Observed: -367 for seed 0 (-346 and -269 for seeds 1 and 2); 2000 steps is not enough.
    assert final["return_mean"] > behaviour + 100, final


def test_rebrac_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """ReBRAC (CORL defaults: three layers of 256, LayerNorm critics, lr 1e-3, BC coefficients
    0.01 / 0.01) with a batch of 256 instead of 1024 improves on the behaviour policy."""
    final = _train(
        tmp_path,
        algo="rebrac",
        dataset="pendulum-medium-v0",
        steps=3000,
        seed=0,
        algo_config={"batch_size": 256},
    )
    # Observed on the composable core (commit after 58f86ad), from data that averages -528:
    # seeds 0-3 give -194, -274, -245, -250 (about 60 s each on 1 thread), so the margin over
    # the threshold is 100 or more for each seed (BC coefficients 0.05 / 0.05 instead: -231,
    # -593, -522, -260; lr 3e-4: -180 for seed 0).
    assert final["return_mean"] > final["behaviour_return_mean"] + 150, final


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
    """IQL (paper defaults but (128, 128) networks, return-range reward scaling) improves on the
    behaviour policy."""
    final = _train(
        tmp_path,
        algo="iql",
        dataset="pendulum-medium-v0",
        steps=3000,
        seed=0,
        algo_config={"hidden": (128, 128)},
    )
    # Observed: -172 at 3000 steps in 43 s (2000 steps: -744), from data that averages -528;
    # with the paper's (256, 256): -191 (normalised 97), 76 s.
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


def _train_records(run: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("kind") == "train"]


def test_cql_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """CQL (small networks, see CQL_SMALL) improves on the pendulum-medium-v0 behaviour policy.

    Observed: -182 at 2000 steps (28 s), -138 (normalised 102) at 3000, from data that averages
    -528.
    """
    final = _train(
        tmp_path,
        algo="cql",
        dataset="pendulum-medium-v0",
        steps=2000,
        seed=0,
        algo_config=CQL_SMALL,
    )
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


# Narrow data, fast-moving critics: where naive offline SAC's Q-values blow up within 3000 steps.
# Both algorithms share these settings; CQL also takes SAC's actor/temperature learning rates
# and entropy backup, so the conservative penalty is the only difference between the two.
Q_DIVERGENCE = {"hidden": (64, 64), "batch_size": 128, "tau": 0.05, "critic_lr": 1e-3}
CQL_AS_SAC = {"actor_lr": 3e-4, "alpha_lr": 3e-4, "backup_entropy": True}


def test_cql_q_values_stay_below_naive_sac(tmp_path: Path) -> None:
    """Why conservative: on narrow data, SAC's Q-values diverge upwards and CQL's do not.

    ``pendulum-expert-v0`` holds one (near-deterministic) action per state, so SAC's critic
    bootstraps from actions the data never shows, and its policy climbs towards wherever the
    critic errs high. Pendulum rewards are all <= 0, so every true Q is <= 0: a positive
    ``q_mean`` (the critic's mean Q on dataset actions) is pure overestimation.
    """
    q = {}
    for algo, extra in (("sac", {}), ("cql", {**CQL_AS_SAC, "num_samples": 4, "cql_alpha": 5.0})):
        final = _train(
            tmp_path / algo,
            algo=algo,
            dataset="pendulum-expert-v0",
            steps=3000,
            seed=0,
            algo_config={**Q_DIVERGENCE, **extra},
        )
        q[algo] = [r["q_mean"] for r in _train_records(tmp_path / algo / "run")]
        q[algo + "_return"] = final["return_mean"]
    # Observed, q_mean averaged over each 500 steps: sac -4.9, -15.5, -16.3, -1.8, +27.7, +59.6
    # (its policy returned -1618, worse than random); cql -15, -68, -129, -197, -274, -359
    # (conservative: far below what episodes returning -156 in all allow; policy -885). Timing:
    # 275 s for the whole test at a load average of 10 on the 2-core machine; estimated about
    # 60 s on one free core (SAC ran 8000 such steps in 37 s at low load; CQL costs about 3x).
    assert q["sac"][-1] > 20.0, q  # far above any achievable value, and rising:
    assert q["sac"][-1] > q["sac"][-2] + 10.0, q
    assert q["cql"][-1] < 0.0, q
