"""offrl's CQL update is d3rlpy 2.8.1's CQL update, fixed alpha and Lagrange-tuned alpha, from
the same weights, batches and random draws, to rounding after eight updates: in float64 every
weight to 1e-9, in float32 every loss and every weight but the critics' own (which Adam's first
step can move by rounding-level gradients; ``_d3rlpy_replay``). Recorded by
``benchmarks/d3rlpy/same_update_cql.py``.

offrl is configured to d3rlpy's recipe where it has the option (``mean_backup=True``: the
target at the policy's mean action, d3rlpy's deterministic backup). d3rlpy's draws (the uniform,
pi(s) and pi(s') proposals, the actor's sample) are the same numbers offrl takes, in another
order and row layout, so the test serves d3rlpy's recorded draws to offrl's unchanged draw calls
(:class:`_d3rlpy_replay.ScriptedDraws`).

* Fixed alpha, temperature frozen: offrl's own ``update()`` equals d3rlpy's sub-steps called in
  offrl's order (actor, critic with penalty, targets).
* d3rlpy's own update, fixed alpha and Lagrange: offrl's losses with d3rlpy's order, its
  temperature step and (Lagrange) its alpha' timing switched in equal it
  (:class:`_d3rlpy_replay.D3rlpyOrder`); offrl's own update does not.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import (
    TOLERANCE,
    D3rlpyOrder,
    ScriptedDraws,
    assert_metrics,
    batch,
    default_dtype,
    recorded,
    scalar_diff,
    set_scalar,
)

from offrl.algos import EnvSpec
from offrl.algos.cql import CQL
from offrl.algos.sac import SAC
from offrl.data.sampler import Batch

pytestmark = needs_d3rlpy


class D3rlpyOrderCQL(D3rlpyOrder, CQL):
    """offrl's CQL losses in d3rlpy's order (see :class:`D3rlpyOrder`)."""


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_cql.pt"
    return run_d3rlpy("same_update_cql.py", out, "--updates", "8")


def _offrl_draws(d: dict[str, torch.Tensor], actor_first: bool) -> list[tuple[str, torch.Tensor]]:
    """One update's recorded draws as offrl's CQL takes them: its critic loss draws the uniform
    actions ``[k * B, act]`` in sample-major rows (row ``j * B + b`` is state ``b``; d3rlpy's
    are batch-major), then pi(s)'s and pi(s')'s noise (the same layout as d3rlpy's); the actor
    draws ``[B, act]``."""
    k, b, act = d["pi_obs"].shape
    uniform = d["uniform"].view(b, k, act).transpose(0, 1).reshape(k * b, act)
    critic = [
        ("rand", uniform),
        ("randn", d["pi_obs"].reshape(k * b, act)),
        ("randn", d["pi_next_obs"].reshape(k * b, act)),
    ]
    actor = [("randn", d["actor"])]
    return actor + critic if actor_first else critic + actor


def _replay(
    run: dict[str, Any],
    variant: str,
    monkeypatch: pytest.MonkeyPatch,
    cls: type[SAC] = CQL,
    shift: int = 0,
) -> tuple[Any, list[dict[str, float]]]:
    """offrl's CQL (or ``cls``) from d3rlpy's initial weights through its batches and draws
    (update ``k`` gets update ``k + shift``'s draws: ``shift=0`` is the recorded noise)."""
    lagrange = variant == "lagrange"
    config = cls.config_class(mean_backup=True, lagrange=lagrange, target_action_gap=10.0)
    with default_dtype(run["dtype"]):
        algo = cls(EnvSpec((17,), 6), config, seed=0)
        start = run["runs"][variant]["initial"]
        load_layers(algo.actor.net, [start["actor"]])
        load_layers(algo.critic.net, start["critics"])
        load_layers(algo.critic_target.net, start["critic_targets"])
        set_scalar(algo.log_alpha.value, start["log_temp"])
        if lagrange:
            set_scalar(algo.conservative.log_alpha_prime.value, start["log_alpha"])
        if variant == "fixed_offrl_order":  # d3rlpy's run has temp_learning_rate=0
            algo.alpha_optim.param_groups[0]["lr"] = 0.0
        noise = ScriptedDraws(monkeypatch, algo.generator)
        if isinstance(algo, D3rlpyOrder):
            algo.noise = noise
        actor_first = not isinstance(algo, D3rlpyOrder)
        draws = run["runs"][variant]["draws"]
        metrics = []
        for k, b in enumerate(run["batches"]):
            noise.start(_offrl_draws(draws[(k + shift) % len(draws)], actor_first))
            metrics.append(algo.update(batch(b)))
            noise.done()
    return algo, metrics


def _weight_diff(algo: Any, nets: dict[str, Any], critics: bool = True) -> float:
    """The largest difference over every network and parameter (``critics=False``: all but
    the critics and their Polyak targets)."""
    diffs = [
        max_diff(algo.actor.net, [nets["actor"]]),
        scalar_diff(algo.log_alpha.value, nets["log_temp"]),
    ]
    if critics:
        diffs.append(max_diff(algo.critic.net, nets["critics"]))
        diffs.append(max_diff(algo.critic_target.net, nets["critic_targets"]))
    if algo.config.lagrange:
        diffs.append(scalar_diff(algo.conservative.log_alpha_prime.value, nets["log_alpha"]))
    return max(diffs)


def _with_gap(
    metrics: list[dict[str, float]], scale: float, shift: float
) -> list[dict[str, float]]:
    """d3rlpy's ``conservative_loss`` (``sum_i alpha * w * (gap_i - threshold)``) as offrl's
    ``cql_gap`` (the mean over critics of ``gap_i``): ``conservative_loss / scale + shift``."""
    return [{**m, "gap": m["conservative_loss"] / scale + shift} for m in metrics]


def test_offrl_cql_update_equals_d3rlpys_steps(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """offrl's own update(), fixed alpha, temperature frozen as in d3rlpy's run, through
    d3rlpy's update_actor, update_critic and update_critic_target (float64)."""
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1"
    run = recorded(d3rlpy_file, "float64")
    theirs = run["runs"]["fixed_offrl_order"]
    algo, metrics = _replay(run, "fixed_offrl_order", monkeypatch)
    gap = _with_gap(theirs["metrics"], 2 * 10.0, 0.0)  # two critics, weight 10, alpha 1
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss", "cql_gap": "gap"}
    assert_metrics(metrics, gap, names, "float64")
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE["float64"].weights
    # The updates moved the weights ~1e6 times further than that, so the comparison can tell.
    assert max_diff(algo.critic.net, theirs["initial"]["critics"]) > 1e-3


@pytest.mark.parametrize("variant", ["fixed", "lagrange"])
def test_d3rlpy_cql_is_offrls_losses_in_d3rlpys_order(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """d3rlpy's own inner_update, fixed or Lagrange-tuned alpha (offrl's alpha', its log
    compared too), in float64."""
    run = recorded(d3rlpy_file, "float64")
    theirs = run["runs"][variant]
    algo, metrics = _replay(run, variant, monkeypatch, cls=D3rlpyOrderCQL)
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss", "alpha_loss": "temp_loss"}
    if variant == "fixed":
        names["cql_gap"] = "gap"
    assert_metrics(metrics, _with_gap(theirs["metrics"], 2 * 10.0, 0.0), names, "float64")
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE["float64"].weights
    if variant == "lagrange":
        start = theirs["initial"]["log_alpha"]
        assert scalar_diff(algo.log_alpha_prime.value, start) > 1e-3


def test_d3rlpy_cql_in_float32(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lagrange run in float32: every update's losses to float32 rounding, and the actor,
    temperature and alpha'. Not the critics (nor their targets): Adam's first step amplifies
    their rounding-level gradient elements (``_d3rlpy_replay``); the float64 tests compare
    them."""
    run = recorded(d3rlpy_file, "float32")
    theirs = run["runs"]["lagrange"]
    algo, metrics = _replay(run, "lagrange", monkeypatch, cls=D3rlpyOrderCQL)
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss", "alpha_loss": "temp_loss"}
    assert_metrics(metrics, theirs["metrics"], names, "float32")
    assert _weight_diff(algo, theirs["final"], critics=False) < TOLERANCE["float32"].weights
    assert max_diff(algo.critic.net, theirs["final"]["critics"]) < 1e-3  # vs moved 2.4e-3
    assert max_diff(algo.critic_target.net, theirs["final"]["critic_targets"]) < 1e-4


class OffrlAlphaPrimeTiming(D3rlpyOrderCQL):
    """d3rlpy's order and temperature step, but offrl's alpha' timing: the critic loss uses
    alpha' first, alpha' steps after."""

    def critic_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, info = self.critic_loss(batch)
        self.optimize(self.critic_optim, loss)
        prime_loss, _ = self.alpha_prime_loss(info["_gap"])
        self.optimize(self.alpha_prime_optim, prime_loss)
        return info


@pytest.mark.parametrize("variant", ["fixed", "lagrange"])
def test_offrls_own_update_differs_from_d3rlpys(
    d3rlpy_file: dict[str, Any], monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """The check can fail, and each switched choice matters: offrl's own update (its order,
    temperature step and alpha' timing) from the same start and draws ends ~1e-3 away; so does
    the switched update fed each update the next one's draws; with only alpha' stepped
    offrl's way, the Lagrange run ends ~1e-6 away (1e3 x the tolerance)."""
    run = recorded(d3rlpy_file, "float64")
    final = run["runs"][variant]["final"]
    algo, _ = _replay(run, variant, monkeypatch)
    assert _weight_diff(algo, final) > 1e-4
    algo, _ = _replay(run, variant, monkeypatch, D3rlpyOrderCQL, shift=1)
    assert _weight_diff(algo, final) > 1e-4
    if variant == "lagrange":
        algo, _ = _replay(run, variant, monkeypatch, OffrlAlphaPrimeTiming)
        assert _weight_diff(algo, final) > 1000 * TOLERANCE["float64"].weights
