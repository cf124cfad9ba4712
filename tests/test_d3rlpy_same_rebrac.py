"""offrl's ReBRAC update is d3rlpy 2.8.1's ReBRAC update: from the same weights, batches (with
the data's next actions) and target-smoothing noise, eight updates end at d3rlpy's weights up
to float32 rounding (recorded by ``benchmarks/d3rlpy/same_update.py --rebrac``).

In float64 every weight agrees to 1e-12; in float32 the losses to float32 rounding, the actor to
1e-5, and the critics to 5e-5 (LayerNorm's backward and Adam's first steps amplify rounding-
level gradient differences; the critics move ~1e-2). Both at offrl's ReBRAC defaults: hidden 256
x 3, ``Linear -> ReLU -> LayerNorm`` critics, lr 1e-3, beta_actor = beta_critic = 0.01, the
actor's Q term scaled by ``1 / mean|Q|``. offrl's CORL initialisation is replaced by d3rlpy's
weights (and LayerNorms at 1, 0 on both sides). Needs d3rlpy's virtual environment (``bash
benchmarks/d3rlpy/setup.sh``; CI builds it)."""

from __future__ import annotations

from typing import Any

import pytest
from _d3rlpy import max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import default_dtype
from test_d3rlpy_same_update import _replay as replay_td3bc

from offrl.algos import EnvSpec
from offrl.algos.rebrac import ReBRAC, ReBRACConfig
from offrl.algos.td3bc import TD3BC

pytestmark = needs_d3rlpy


@pytest.fixture(scope="module", params=["float32", "float64"])
def d3rlpy_run(tmp_path_factory: pytest.TempPathFactory, request: Any) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / f"same_rebrac_{request.param}.pt"
    return run_d3rlpy("same_update.py", out, "--updates", "8", "--rebrac", "--dtype", request.param)


TOLERANCE = {"float32": (1e-5, 5e-5), "float64": (1e-12, 1e-12)}
"""Per dtype: the largest weight difference allowed for the actor, and for the critics."""


def _replay(
    run: dict[str, Any], critic_bc_coef: float = 0.01
) -> tuple[TD3BC, list[dict[str, float]]]:
    """offrl's ReBRAC from d3rlpy's initial weights through its batches and noise (TD3+BC's
    harness: the same four networks, the same actor delay)."""
    config = ReBRACConfig(batch_size=256, critic_bc_coef=critic_bc_coef)
    with default_dtype(run["dtype"]):
        return replay_td3bc(run, algo=ReBRAC(EnvSpec((17,), 6), config, seed=0))


def test_offrl_rebrac_update_equals_d3rlpy(d3rlpy_run: dict[str, Any]) -> None:
    assert d3rlpy_run["library"] == "d3rlpy 2.8.1" and d3rlpy_run["algo"] == "rebrac"
    algo, metrics = _replay(d3rlpy_run)
    for ours, theirs in zip(metrics, d3rlpy_run["metrics"], strict=True):
        for key in ("critic_loss", "actor_loss", "bc_loss"):
            if key in theirs and key in ours:
                assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
    final = d3rlpy_run["final"]
    actor_tol, critic_tol = TOLERANCE[d3rlpy_run["dtype"]]
    assert max_diff(algo.actor.net, [final["actor"]]) < actor_tol
    assert max_diff(algo.actor_target.net, [final["actor_target"]]) < actor_tol
    assert max_diff(algo.critic.net, final["critics"]) < critic_tol
    assert max_diff(algo.critic_target.net, final["critic_targets"]) < critic_tol
    # The weights moved far more than that, so the comparison can tell.
    assert max_diff(algo.critic.net, d3rlpy_run["initial"]["critics"]) > 1e-3


def test_without_the_critic_penalty_the_critics_end_elsewhere(d3rlpy_run: dict[str, Any]) -> None:
    """The check can fail: TD3's target (beta_critic = 0) on the same record leaves the critics
    far from d3rlpy's ReBRAC."""
    algo, _ = _replay(d3rlpy_run, critic_bc_coef=0.0)
    assert max_diff(algo.critic.net, d3rlpy_run["final"]["critics"]) > 1e-4
