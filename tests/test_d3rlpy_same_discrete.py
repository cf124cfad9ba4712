"""offrl's ``qrdqn`` and ``discrete_cql`` are d3rlpy 2.8.1's ``DoubleDQN`` and ``DiscreteCQL`` on
its ``QRQFunctionFactory``; offrl's ``discrete_bcq`` is its ``DiscreteBCQ`` (the imitator
sharing the encoder), and offrl's BC over discrete actions its ``DiscreteBC``. They start from
the same weights and batches and agree to rounding after eight updates with two target copies,
in float32 and float64 (``benchmarks/d3rlpy/same_update_discrete.py``).

The quantile loss, the double-Q target, the terminal mask, CQL(H)'s log-sum-exp penalty, and
BCQ's filtered target and imitation loss are the same arithmetic. Two documented differences
remain:

* the target copy's timing: d3rlpy copies the network into its target *after* the optimiser
  step of update ``k`` when ``k % interval == 0``, from the first update on; offrl copies the
  weights from *before* the step (Tianshou's order, which offrl's Tianshou test pins);
* BCQ's logit penalty: d3rlpy squares the log-probabilities (:class:`LogProbPenaltyBCQ`),
  offrl (as Tianshou) the logits; d3rlpy's ``DiscreteBC`` adds the same log-probability penalty
  (``beta``, 0.5 by default) to the likelihood, offrl's BC has none (:class:`LogProbPenaltyBC`).

With d3rlpy's choices switched in (``target_copy="after_step"`` and that penalty), the updates
are d3rlpy's; with offrl's own, the run ends elsewhere.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import DTYPES, TOLERANCE, assert_metrics, batch, default_dtype, recorded

from offrl.algos import EnvSpec, get_algorithm
from offrl.algos.base import hard_update
from offrl.algos.bc import BC, BCConfig
from offrl.algos.discrete_bcq import DiscreteBCQ
from offrl.data.sampler import Batch
from offrl.nn import CategoricalPolicy

pytestmark = needs_d3rlpy

NAMES = {"qrdqn": "qrdqn", "cql": "discrete_cql", "bcq": "discrete_bcq"}
KINDS = list(NAMES)


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_discrete.pt"
    return run_d3rlpy("same_update_discrete.py", out, "--updates", "8")


class LogProbPenaltyBCQ(DiscreteBCQ):
    """offrl's discrete BCQ with d3rlpy's regulariser: d3rlpy squares ``Categorical(logits=
    x).logits``, which torch normalises to log-probabilities, not the raw logits."""

    def logits_penalty(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits, -1).pow(2).mean()


def _layers(weights: dict[str, Any], q: str = "q") -> list[list[Any]]:
    """d3rlpy's Q-network ``q`` as offrl's ``DiscreteQNetwork`` layers: for BCQ, the imitator's
    linear layer on the shared encoder is the output layer's extra rows (Q-values, then
    logits)."""
    layers = weights[q]
    if "imitator" in weights:
        (w, b), (wi, bi) = layers[-1], weights["imitator"]
        layers = [*layers[:-1], [torch.cat([w, wi]), torch.cat([b, bi])]]
    return layers


def _replay(saved: dict[str, Any], kind: str, dtype: str, d3rlpy_timing: bool) -> tuple[Any, list]:
    """offrl's algorithm from d3rlpy's initial weights through its batches."""
    run = recorded(saved, dtype)
    s = saved["settings"]
    cls = LogProbPenaltyBCQ if kind == "bcq" and d3rlpy_timing else get_algorithm(NAMES[kind])
    options: dict[str, Any] = {
        "target_copy": "after_step" if d3rlpy_timing else "before_step",
        "hidden": (256, 256),
        "target_update_every": int(s["target_every"]),
        "lr": float(s["lr"]),
        "batch_size": 32,
    }
    if kind == "bcq":
        options["threshold"] = float(s["flexibility"])
        options["imitation_penalty"] = float(s["beta"])
    else:
        options["num_quantiles"] = int(s["quantiles"])
    if kind == "cql":
        options["min_q_weight"] = float(s["alpha"])
    with default_dtype(dtype):
        algo = cls(EnvSpec((int(s["obs_dim"]),), int(s["actions"]), discrete=True),
                   cls.config_class.from_dict(options), seed=0)  # fmt: skip
        load_layers(algo.q.net, [_layers(run["runs"][kind]["initial"])])
        hard_update(algo.q_target, algo.q)
        metrics = [algo.update(batch(b)) for b in run["batches"]]
    return algo, metrics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_offrl_update_equals_d3rlpys_with_its_target_timing(
    d3rlpy_file: dict[str, Any], kind: str, dtype: str
) -> None:
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1"
    theirs = recorded(d3rlpy_file, dtype)["runs"][kind]
    algo, metrics = _replay(d3rlpy_file, kind, dtype, d3rlpy_timing=True)
    names = {
        "qrdqn": {"qr_loss": "loss"},
        "cql": {"qr_loss": "td_loss", "cql_loss": "conservative_loss"},
        "bcq": {"q_loss": "td_loss"},
    }[kind]
    assert_metrics(metrics, theirs["metrics"], names, dtype)
    tol = TOLERANCE[dtype]
    if kind == "bcq":  # d3rlpy reports the imitator's NLL and its logit penalty together
        beta = float(d3rlpy_file["settings"]["beta"])
        for ours, its in zip(metrics, theirs["metrics"], strict=True):
            mine = float(ours["imitation_loss"]) + beta * float(ours["logits_penalty"])  # log-probs
            assert mine == pytest.approx(its["imitator_loss"], rel=tol.rel, abs=tol.abs)
    assert max_diff(algo.q.net, [_layers(theirs["final"])]) < tol.weights
    # The target's Q rows are d3rlpy's target network (its extra logit rows are never read).
    (w, b), (tw, tb) = algo.q_target.net.layers()[-1], theirs["final"]["q_target"][-1]
    a = int(d3rlpy_file["settings"]["actions"]) * (
        1 if kind == "bcq" else int(d3rlpy_file["settings"]["quantiles"])
    )
    hidden = algo.q_target.net.layers()[:-1]
    for (hw, hb), (dw, db) in zip(hidden, theirs["final"]["q_target"][:-1], strict=True):
        assert float((hw[0] - dw.t()).abs().max()) < tol.weights
        assert float((hb[0, 0] - db).abs().max()) < tol.weights
    assert float((w[0, :, :a] - tw.t()).abs().max()) < tol.weights
    assert float((b[0, 0, :a] - tb).abs().max()) < tol.weights
    # Eight updates moved the weights far beyond the tolerance, so the check can tell.
    assert max_diff(algo.q.net, [_layers(theirs["initial"])]) > 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_offrls_own_target_timing_ends_elsewhere(d3rlpy_file: dict[str, Any], kind: str) -> None:
    """offrl's copy of the pre-step weights is the only difference: left in, the run ends away
    from d3rlpy's by far more than float64 rounding."""
    theirs = recorded(d3rlpy_file, "float64")["runs"][kind]
    algo, _ = _replay(d3rlpy_file, kind, "float64", d3rlpy_timing=False)
    assert max_diff(algo.q.net, [_layers(theirs["final"])]) > 1e-7


class LogProbPenaltyBC(BC):
    """offrl's discrete BC plus d3rlpy's ``beta`` times the mean squared log-probability."""

    beta = 0.5

    def bc_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, info = super().bc_loss(batch)
        assert isinstance(self.actor, CategoricalPolicy)
        log_probs = torch.log_softmax(self.actor.logits(batch.obs), -1)
        return loss + self.beta * log_probs.pow(2).mean(), info


def _replay_bc(saved: dict[str, Any], kind: str, dtype: str, cls: type[BC]) -> tuple[BC, list]:
    """``cls`` (discrete BC) from d3rlpy's ``kind`` run's initial weights through its batches."""
    s = saved["settings"]
    run = recorded(saved, dtype)
    with default_dtype(dtype):
        spec = EnvSpec((int(s["obs_dim"]),), int(s["actions"]), discrete=True)
        algo = cls(spec, BCConfig(lr=float(s["lr"]), batch_size=32), seed=0)
        load_layers(algo.actor.net, [run["runs"][kind]["initial"]["policy"]])
        metrics = [algo.update(batch(b)) for b in run["batches"]]
    return algo, metrics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["bc", "bc_beta"])
def test_offrl_discrete_bc_equals_d3rlpys(
    d3rlpy_file: dict[str, Any], kind: str, dtype: str
) -> None:
    """offrl's BC over discrete actions (the negative log-likelihood) is d3rlpy's
    ``DiscreteBC`` at ``beta=0``; d3rlpy's default ``beta=0.5`` adds its squared-log-probability
    penalty, and with that switched in (:class:`LogProbPenaltyBC`) it is d3rlpy's too."""
    theirs = recorded(d3rlpy_file, dtype)["runs"][kind]
    algo, metrics = _replay_bc(
        d3rlpy_file, kind, dtype, LogProbPenaltyBC if kind == "bc_beta" else BC
    )
    assert_metrics(metrics, theirs["metrics"], {"bc_loss": "imitation_loss"}, dtype)
    assert max_diff(algo.actor.net, [theirs["final"]["policy"]]) < TOLERANCE[dtype].weights
    assert max_diff(algo.actor.net, [theirs["initial"]["policy"]]) > 1e-4
    if kind == "bc_beta":  # the check can fail: without the penalty, the run ends elsewhere
        plain, _ = _replay_bc(d3rlpy_file, kind, dtype, BC)
        assert max_diff(plain.actor.net, [theirs["final"]["policy"]]) > 1e-6
