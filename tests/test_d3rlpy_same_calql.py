"""offrl's Cal-QL update is d3rlpy 2.8.1's ``CalQL`` update, from the same weights, batches,
returns-to-go and random draws, to float64 rounding after eight updates (recorded by
``benchmarks/d3rlpy/same_update_cql.py --calql``).

d3rlpy's Cal-QL is its CQL with ``max(Q, returns_to_go)`` on the policy samples' values (its
``_compute_policy_is_values``), as offrl's is its CQL with the same floor; so the harness is
the CQL one (``test_d3rlpy_same_cql``: d3rlpy's recipe switched on in offrl's config, its order
and temperature step in :class:`D3rlpyOrder`). The recorded returns-to-go are on the critics'
scale, so the floor binds on part of the samples; without it (offrl's CQL on the same record)
the weights end elsewhere.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
from _d3rlpy import max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import TOLERANCE, D3rlpyOrder, assert_metrics, recorded
from test_d3rlpy_same_cql import D3rlpyOrderCQL, _replay, _weight_diff, _with_gap

from offrl.algos.calql import CalQL

pytestmark = needs_d3rlpy


class D3rlpyOrderCalQL(D3rlpyOrder, CalQL):
    """offrl's Cal-QL losses in d3rlpy's order (see :class:`D3rlpyOrder`)."""


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_calql.pt"
    return run_d3rlpy("same_update_cql.py", out, "--updates", "8", "--calql")


def test_offrl_calql_update_equals_d3rlpys_steps(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """offrl's own update(), fixed alpha, temperature frozen, through d3rlpy's update_actor,
    update_critic and update_critic_target (float64); the floor bound on part of the samples."""
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1" and d3rlpy_file["algo"] == "calql"
    run = recorded(d3rlpy_file, "float64")
    theirs = run["runs"]["fixed_offrl_order"]
    algo, metrics = _replay(run, "fixed_offrl_order", monkeypatch, cls=CalQL)
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss", "cql_gap": "gap"}
    assert_metrics(metrics, _with_gap(theirs["metrics"], 2 * 10.0, 0.0), names, "float64")
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE["float64"].weights
    rates = [m["calibration_rate"] for m in metrics]
    assert min(rates) > 0.05 and max(rates) < 0.95, rates  # the floor mattered, not everywhere


@pytest.mark.parametrize("variant", ["fixed", "lagrange"])
def test_d3rlpy_calql_is_offrls_losses_in_d3rlpys_order(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """d3rlpy's own inner_update, fixed or Lagrange-tuned alpha, in float64."""
    run = recorded(d3rlpy_file, "float64")
    theirs = run["runs"][variant]
    algo, metrics = _replay(run, variant, monkeypatch, cls=D3rlpyOrderCalQL)
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss", "alpha_loss": "temp_loss"}
    assert_metrics(metrics, theirs["metrics"], names, "float64")
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE["float64"].weights


def test_without_the_floor_the_update_ends_elsewhere(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CQL (no calibration) from the same start, batches and draws: the critics end far from
    d3rlpy's Cal-QL, so the tests above can tell the floor apart."""
    run = recorded(d3rlpy_file, "float64")
    final = run["runs"]["fixed"]["final"]
    algo, _ = _replay(run, "fixed", monkeypatch, cls=D3rlpyOrderCQL)
    assert max_diff(algo.critic.net, final["critics"]) > 1000 * TOLERANCE["float64"].weights
