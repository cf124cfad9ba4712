"""offrl's BC is d3rlpy 2.8.1's BC, both policy types, from the same weights, batches and noise,
to rounding after eight updates, in float32 and in float64
(``benchmarks/d3rlpy/same_update_bc.py``; tolerances in ``_d3rlpy_replay.TOLERANCE``).

* ``policy="deterministic"``: offrl's own ``update()`` is d3rlpy's ``policy_type="deterministic"``.
* ``policy="gaussian"`` and d3rlpy's ``policy_type="stochastic"`` share the policy (mean
  ``tanh(mu(s))``, a state-dependent log-std head) but not the loss: offrl maximises the
  likelihood of the dataset's action; d3rlpy regresses one reparameterised sample on it (mean
  squared error of ``clip(mu + sigma * eps, -1, 1)``), and clamps the log-std to [-4, 15]
  (offrl: [-5, 2]; no log-std here comes near either). offrl's policy computes d3rlpy's
  Gaussian and offrl's loss d3rlpy's negative log-likelihood at the same weights, and with
  d3rlpy's loss switched in (:class:`SampledMSEBC`) offrl's update is d3rlpy's.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import (
    DTYPES,
    TOLERANCE,
    SeededNoise,
    assert_metrics,
    batch,
    default_dtype,
    recorded,
)

from offrl.algos import EnvSpec
from offrl.algos.bc import BC, BCConfig
from offrl.data.sampler import Batch
from offrl.nn import GaussianPolicy

pytestmark = needs_d3rlpy


class SampledMSEBC(BC):
    """offrl's Gaussian BC with d3rlpy's ``stochastic`` loss and log-std bounds."""

    def build(self) -> None:
        super().build()
        assert isinstance(self.actor, GaussianPolicy)
        self.actor.head.log_std_min, self.actor.head.log_std_max = -4.0, 15.0

    def bc_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert isinstance(self.actor, GaussianPolicy)
        dist = self.actor.distribution(batch.obs)
        loc = dist.loc
        eps = torch.randn(loc.shape, generator=self.generator, dtype=loc.dtype, device=loc.device)
        loss = F.mse_loss((loc + eps * dist.scale).clamp(-1.0, 1.0), batch.actions)
        return loss, {"bc_loss": loss.detach()}


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_bc.pt"
    return run_d3rlpy("same_update_bc.py", out, "--updates", "8")


def _bc(run: dict[str, Any], kind: str, cls: type[BC] = BC, when: str = "initial") -> BC:
    """``cls`` with d3rlpy's ``kind`` run's ``when`` weights (in the run's dtype: call it
    inside :func:`default_dtype`)."""
    policy = "deterministic" if kind == "deterministic" else "gaussian"
    algo = cls(EnvSpec((17,), 6), BCConfig(policy=policy), seed=0)
    load_layers(algo.actor.net, [run["runs"][kind][when]["actor"]])
    return algo


def _replay(
    run: dict[str, Any], kind: str, cls: type[BC] = BC, noise_offset: int = 0
) -> tuple[BC, list[dict[str, float]]]:
    """``cls`` from d3rlpy's initial weights through its batches and noise."""
    with default_dtype(run["dtype"]):
        algo = _bc(run, kind, cls)
        noise = SeededNoise(algo.generator)
        metrics = []
        for b, seed in zip(run["batches"], run["noise_seeds"], strict=True):
            noise.start(seed + noise_offset)
            metrics.append(algo.update(batch(b)))
    return algo, metrics


@pytest.mark.parametrize("dtype", DTYPES)
def test_offrl_deterministic_bc_update_equals_d3rlpys(
    d3rlpy_file: dict[str, Any], dtype: str
) -> None:
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1"
    run = recorded(d3rlpy_file, dtype)
    theirs = run["runs"]["deterministic"]
    algo, metrics = _replay(run, "deterministic")
    assert_metrics(metrics, theirs["metrics"], {"bc_loss": "loss"}, dtype)
    assert max_diff(algo.actor.net, [theirs["final"]["actor"]]) < TOLERANCE[dtype].weights
    # The updates moved the weights ~100x further than float32's tolerance, so it can tell.
    assert max_diff(algo.actor.net, [theirs["initial"]["actor"]]) > 1e-3


@pytest.mark.parametrize("when", ["initial", "final"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_offrl_gaussian_policy_and_nll_are_d3rlpys(
    d3rlpy_file: dict[str, Any], dtype: str, when: str
) -> None:
    """At d3rlpy's stochastic policy's initial and final weights, offrl's GaussianPolicy gives
    d3rlpy's Gaussian on the first batch and offrl's own BC loss its negative log-likelihood."""
    run = recorded(d3rlpy_file, dtype)
    theirs = run["runs"]["stochastic"][when]["gaussian"]
    tol = TOLERANCE[dtype]
    with default_dtype(dtype), torch.no_grad():
        algo = _bc(run, "stochastic", when=when)
        assert isinstance(algo.actor, GaussianPolicy)
        first = batch(run["batches"][0])
        dist = algo.actor.distribution(first.obs)
        assert torch.allclose(dist.loc, theirs["loc"], rtol=tol.rel, atol=tol.abs)
        assert torch.allclose(dist.scale, theirs["scale"], rtol=tol.rel, atol=tol.abs)
        loss, _ = algo.bc_loss(first)
    assert float(loss) == pytest.approx(float(theirs["nll"]), rel=tol.rel, abs=tol.abs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_d3rlpy_stochastic_bc_is_offrls_policy_on_a_sampled_mse(
    d3rlpy_file: dict[str, Any], dtype: str
) -> None:
    run = recorded(d3rlpy_file, dtype)
    theirs = run["runs"]["stochastic"]
    algo, metrics = _replay(run, "stochastic", SampledMSEBC)
    assert_metrics(metrics, theirs["metrics"], {"bc_loss": "loss"}, dtype)
    assert max_diff(algo.actor.net, [theirs["final"]["actor"]]) < TOLERANCE[dtype].weights
    assert max_diff(algo.actor.net, [theirs["initial"]["actor"]]) > 1e-3


def test_offrls_gaussian_bc_differs_from_d3rlpys(d3rlpy_file: dict[str, Any]) -> None:
    """The check can fail: offrl's likelihood loss, or d3rlpy's with other noise, ends ~1e-3
    from d3rlpy's stochastic run."""
    run = recorded(d3rlpy_file, "float64")
    final = run["runs"]["stochastic"]["final"]["actor"]
    for cls, offset in [(BC, 0), (SampledMSEBC, 1000)]:
        algo, _ = _replay(run, "stochastic", cls, noise_offset=offset)
        assert max_diff(algo.actor.net, [final]) > 1e-4, cls.__name__
