"""offrl's ``qrdqn`` and ``discrete_cql`` are d3rlpy 2.8.1's ``DoubleDQN`` and ``DiscreteCQL`` on
its ``QRQFunctionFactory``, from the same weights and batches, to rounding after eight updates
with two target copies, in float32 and float64 (``benchmarks/d3rlpy/same_update_discrete.py``).

The quantile loss, the double-Q target, the terminal mask and CQL(H)'s log-sum-exp penalty are
the same arithmetic. One documented difference is the target copy's timing. d3rlpy copies the
network into its target *after* the optimiser step of update ``k`` when ``k % interval == 0``,
from the first update on. offrl copies the weights from *before* the step (Tianshou's order,
which offrl's Tianshou test pins). With d3rlpy's timing switched in (:class:`AfterStep`), the
updates are d3rlpy's; with offrl's own timing, the run ends elsewhere.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import DTYPES, TOLERANCE, assert_metrics, default_dtype, recorded

from offrl.algos import EnvSpec, get_algorithm
from offrl.algos.base import hard_update
from offrl.algos.qrdqn import QRDQN
from offrl.data.sampler import Batch

pytestmark = needs_d3rlpy

NAMES = {"qrdqn": "qrdqn", "cql": "discrete_cql"}


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_discrete.pt"
    return run_d3rlpy("same_update_discrete.py", out, "--updates", "8")


def _after_step(cls: type[QRDQN]) -> type[QRDQN]:
    """``cls`` with d3rlpy's target timing: the copy after the step, at ``k % interval == 0``."""

    class AfterStep(cls):  # type: ignore[misc, valid-type]
        def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
            loss, info = self.critic_loss(batch)
            self.optimize(self.q_optim, loss)
            if self.num_updates % self.config.target_update_every == 0:
                hard_update(self.q_target, self.q)
            return dict(info)

    return AfterStep


def _replay(saved: dict[str, Any], kind: str, dtype: str, d3rlpy_timing: bool) -> tuple[Any, list]:
    """offrl's algorithm from d3rlpy's initial weights through its batches."""
    run = recorded(saved, dtype)
    s = saved["settings"]
    cls = get_algorithm(NAMES[kind])
    if d3rlpy_timing:
        cls = _after_step(cls)
    options: dict[str, Any] = {
        "hidden": (256, 256),
        "num_quantiles": int(s["quantiles"]),
        "target_update_every": int(s["target_every"]),
        "lr": float(s["lr"]),
        "batch_size": 32,
    }
    if kind == "cql":
        options["min_q_weight"] = float(s["alpha"])
    with default_dtype(dtype):
        algo = cls(EnvSpec((int(s["obs_dim"]),), int(s["actions"]), discrete=True),
                   cls.config_class.from_dict(options), seed=0)  # fmt: skip
        load_layers(algo.q.net, [run["runs"][kind]["initial"]["q"]])
        hard_update(algo.q_target, algo.q)
        metrics = []
        for b in run["batches"]:
            batch = Batch(b["obs"], b["actions"], b["rewards"], b["next_obs"], b["dones"])
            metrics.append(algo.update(batch))
    return algo, metrics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["qrdqn", "cql"])
def test_offrl_update_equals_d3rlpys_with_its_target_timing(
    d3rlpy_file: dict[str, Any], kind: str, dtype: str
) -> None:
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1"
    theirs = recorded(d3rlpy_file, dtype)["runs"][kind]
    algo, metrics = _replay(d3rlpy_file, kind, dtype, d3rlpy_timing=True)
    if kind == "cql":
        assert_metrics(
            metrics,
            theirs["metrics"],
            {"qr_loss": "td_loss", "cql_loss": "conservative_loss"},
            dtype,
        )
    else:
        assert_metrics(metrics, theirs["metrics"], {"qr_loss": "loss"}, dtype)
    tol = TOLERANCE[dtype].weights
    assert max_diff(algo.q.net, [theirs["final"]["q"]]) < tol
    assert max_diff(algo.q_target.net, [theirs["final"]["q_target"]]) < tol
    # Eight updates moved the weights far beyond the tolerance, so the check can tell.
    assert max_diff(algo.q.net, [theirs["initial"]["q"]]) > 1e-4


@pytest.mark.parametrize("kind", ["qrdqn", "cql"])
def test_offrls_own_target_timing_ends_elsewhere(d3rlpy_file: dict[str, Any], kind: str) -> None:
    """offrl's copy of the pre-step weights is the only difference: left in, the run ends away
    from d3rlpy's by far more than float64 rounding."""
    theirs = recorded(d3rlpy_file, "float64")["runs"][kind]
    algo, _ = _replay(d3rlpy_file, kind, "float64", d3rlpy_timing=False)
    assert max_diff(algo.q.net, [theirs["final"]["q"]]) > 1e-7
