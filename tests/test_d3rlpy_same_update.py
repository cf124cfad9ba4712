"""offrl's TD3+BC update is d3rlpy 2.8.1's TD3PlusBC update: from the same weights, batches and
target-smoothing noise, both of offrl's paths (hand-derived and autograd) end at d3rlpy's weights
after eight updates, up to float32 rounding. Needs d3rlpy's virtual environment
(``bash benchmarks/d3rlpy/setup.sh``; CI builds it)."""

from __future__ import annotations

from typing import Any

import pytest
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy

from offrl.algos import EnvSpec
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.data.sampler import Batch

pytestmark = needs_d3rlpy


@pytest.fixture(scope="module")
def d3rlpy_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_update.pt"
    return run_d3rlpy("same_update.py", out, "--updates", "8")


def _replay(
    run: dict[str, Any], noise_offset: int = 0, algo: TD3BC | None = None
) -> tuple[TD3BC, list[dict[str, float]]]:
    """offrl's TD3+BC (or ``algo``, e.g. a ReBRAC) from d3rlpy's initial weights through
    d3rlpy's batches (with their next actions, if recorded) and noise."""
    algo = algo if algo is not None else TD3BC(EnvSpec((17,), 6), TD3BCConfig(), seed=0)
    load_layers(algo.actor.net, [run["initial"]["actor"]])
    load_layers(algo.critic.net, run["initial"]["critics"])
    load_layers(algo.actor_target.net, [run["initial"]["actor_target"]])
    load_layers(algo.critic_target.net, run["initial"]["critic_targets"])
    # d3rlpy updates the actor at grad steps 0, 2, ...; offrl when (num_updates + 1) % 2 == 0.
    algo.num_updates = 1
    metrics = []
    for b, seed in zip(run["batches"], run["noise_seeds"], strict=True):
        algo.generator.manual_seed(seed + noise_offset)
        batch = Batch(b["obs"], b["actions"], b["rewards"], b["next_obs"], b["dones"])
        metrics.append(algo.update(batch._replace(next_actions=b.get("next_actions"))))
    return algo, metrics


def test_offrl_td3bc_update_equals_d3rlpy(d3rlpy_run: dict[str, Any]) -> None:
    assert d3rlpy_run["library"] == "d3rlpy 2.8.1"
    algo, metrics = _replay(d3rlpy_run)
    for ours, theirs in zip(metrics, d3rlpy_run["metrics"], strict=True):
        assert set(theirs) <= set(ours)  # offrl adds q_mean
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    final = d3rlpy_run["final"]
    assert max_diff(algo.actor.net, [final["actor"]]) < 1e-5
    assert max_diff(algo.critic.net, final["critics"]) < 1e-5
    assert max_diff(algo.actor_target.net, [final["actor_target"]]) < 1e-5
    assert max_diff(algo.critic_target.net, final["critic_targets"]) < 1e-5
    # The weights moved ~100x that far, so the comparison can tell.
    assert max_diff(algo.critic.net, d3rlpy_run["initial"]["critics"]) > 1e-3


def test_other_noise_gives_other_weights(d3rlpy_run: dict[str, Any]) -> None:
    """The check can fail: other target-smoothing noise leaves the critics ~1e-3 away."""
    algo, _ = _replay(d3rlpy_run, noise_offset=1000)
    assert max_diff(algo.critic.net, d3rlpy_run["final"]["critics"]) > 1e-4
