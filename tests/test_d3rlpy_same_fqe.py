"""offrl's FQE update is d3rlpy 2.8.1's ``d3rlpy.ope.FQE`` update: from the same Q-function
weights, the same fixed policy (d3rlpy's own TD3PlusBC, its actions looked up) and the same
batches, the Q-network and its target end at d3rlpy's weights after eight updates (with hard
target copies after updates 1, 4 and 7), up to float32 rounding.

The one deliberate difference, not exercised here (both use one critic, d3rlpy's default):
with several critics d3rlpy's target is their minimum, offrl's their mean (an estimate, not a
pessimistic bound)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy

from offrl.data import Dataset
from offrl.data.sampler import Batch
from offrl.ope import FQE, FQEConfig

pytestmark = needs_d3rlpy


@pytest.fixture(scope="module")
def d3rlpy_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_d3rlpy("same_fqe.py", tmp_path_factory.mktemp("d3rlpy") / "fqe.pt")


def _replay(run: dict[str, Any], rows_offset: int = 0) -> tuple[FQE, list[float]]:
    t = run["table"]
    data = Dataset.from_arrays(
        observations=t["obs"].numpy(),
        actions=t["actions"].numpy(),
        rewards=t["rewards"].numpy(),
        next_observations=t["next_obs"].numpy(),
        terminals=t["dones"].numpy() > 0.5,
        timeouts=np.zeros(len(t["dones"]), dtype=bool),
    )
    # d3rlpy's policy, as it acted inside its update: its action for each observation.
    table = {}
    for obs, pi in ((t["obs"], run["pi_obs"]), (t["next_obs"], run["pi_next_obs"])):
        table.update({o.numpy().tobytes(): a.numpy() for o, a in zip(obs, pi, strict=True)})

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.stack([table[o.astype(np.float32).tobytes()] for o in obs])

    c = run["config"]
    cfg = FQEConfig(
        lr=c["lr"],
        batch_size=c["batch_size"],
        gamma=c["gamma"],
        num_critics=c["n_critics"],
        target_update_interval=c["target_update_interval"],
        norm_obs=False,  # d3rlpy's FQE without an observation scaler
    )
    fqe = FQE(policy, data, cfg)
    load_layers(fqe.q.net, [run["initial"]["q"]])
    load_layers(fqe.q_target.net, [run["initial"]["q_target"]])
    losses = []
    for idx in run["rows"]:
        idx = (idx + rows_offset) % len(data)
        batch = Batch(
            t["obs"][idx], t["actions"][idx], t["rewards"][idx], t["next_obs"][idx],
            t["dones"][idx], idx,
        )  # fmt: skip
        losses.append(fqe.update(batch)["loss"])
    return fqe, losses


def test_offrl_fqe_update_equals_d3rlpy(d3rlpy_run: dict[str, Any]) -> None:
    assert d3rlpy_run["library"] == "d3rlpy 2.8.1"
    fqe, losses = _replay(d3rlpy_run)
    assert losses == pytest.approx(d3rlpy_run["losses"], rel=1e-5, abs=1e-6)
    final = d3rlpy_run["final"]
    assert max_diff(fqe.q.net, [final["q"]]) < 1e-5
    assert max_diff(fqe.q_target.net, [final["q_target"]]) < 1e-5
    # the weights moved ~8 Adam steps of 1e-4, 50x the tolerance, so the comparison can tell
    assert max_diff(fqe.q.net, [d3rlpy_run["initial"]["q"]]) > 5e-4


def test_other_batches_give_other_weights(d3rlpy_run: dict[str, Any]) -> None:
    """The check can fail: the same updates on other rows end elsewhere."""
    fqe, _ = _replay(d3rlpy_run, rows_offset=1)
    assert max_diff(fqe.q.net, [d3rlpy_run["final"]["q"]]) > 1e-4


def test_the_policy_is_looked_up_not_recomputed(d3rlpy_run: dict[str, Any]) -> None:
    """offrl's precomputed pi(s') is d3rlpy's own action at each next observation (mapped
    into [-1, 1] by the same arithmetic as the dataset's actions: ``2 (a + 1) / 2 - 1``, exact
    to a float32 rounding)."""
    fqe, _ = _replay(d3rlpy_run)
    torch.testing.assert_close(fqe.next_actions, d3rlpy_run["pi_next_obs"], rtol=0, atol=1e-7)
