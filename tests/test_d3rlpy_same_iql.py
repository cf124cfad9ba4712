"""offrl's IQL losses are d3rlpy 2.8.1's IQL update, from the same weights and batches, to
rounding after eight updates, in float32 and in float64 (``benchmarks/d3rlpy/same_update_iql.py``;
tolerances in ``_d3rlpy_replay.TOLERANCE``), cosine-annealed actor learning rate included.

d3rlpy's IQL differs from offrl's in two documented choices, both switched to d3rlpy's in
:class:`D3rlpyIQL` (offrl's own losses, networks and optimisers otherwise):

* Order: d3rlpy takes one Adam step on Q and V together, so Q's target ``r + gamma V(s')`` uses
  V *before* this update's value step; offrl (as the official code) steps V first and
  regresses Q on the new V.
* The policy's state-independent log-std: d3rlpy parameterises it as ``-5 + 7 sigmoid(p)``
  (``p = 0`` at the start: log-std -1.5); offrl's is a free vector clamped to ``[-5, 2]`` (0 at
  the start), as the official code's.

With either one left as offrl's, the run ends measurably elsewhere.

Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import DTYPES, TOLERANCE, assert_metrics, batch, default_dtype, recorded

from offrl.algos import EnvSpec
from offrl.algos.base import make_optimizer, soft_update
from offrl.algos.iql import IQL, IQLConfig
from offrl.data.sampler import Batch
from offrl.nn.heads import GaussianHead

pytestmark = needs_d3rlpy

# d3rlpy's value loss weights the squared errors by ``|0.7 - (diff < 0).float()|``: float32
# numbers even in a float64 run. offrl's expectile as that float32 number gives the same weights.
EXPECTILE = float(torch.tensor(0.7, dtype=torch.float32))


class SigmoidLogStdHead(GaussianHead):
    """d3rlpy's state-independent log-std: ``log_std_min + sigmoid(p) (log_std_max -
    log_std_min)`` of a free vector ``p`` (``self.log_std``)."""

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        assert self.log_std is not None
        span = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + torch.sigmoid(self.log_std) * span
        return torch.distributions.Normal(torch.tanh(x), log_std.exp().expand_as(x))


class SigmoidStdIQL(IQL):
    """offrl's IQL with d3rlpy's log-std parameterisation (its actor optimiser and schedule
    rebuilt over the new head's parameter)."""

    def build(self) -> None:
        super().build()
        cfg = self.config
        self.actor.head = SigmoidLogStdHead(self.spec.action_dim, state_dependent_std=False)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        assert cfg.max_steps
        self.actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.actor_optim, cfg.max_steps
        )


class D3rlpyOrderIQL(SigmoidStdIQL):
    """offrl's IQL losses in d3rlpy's order: Q's loss on V before the value step."""

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        with torch.no_grad():
            target_q = self.critic_target(batch.obs, batch.actions).amin(0)
        critic_loss, critic_info = self.critic_loss(batch)  # V(s') before V's step
        value_loss, value_info = self.value_loss(batch, target_q)
        self.optimize(self.value_optim, value_loss)
        actor_loss, actor_info = self.actor_loss(batch, target_q)  # with the new V
        self.optimize(self.actor_optim, actor_loss)
        self.optimize(self.critic_optim, critic_loss)
        assert self.actor_schedule is not None
        self.actor_schedule.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {**value_info, **actor_info, **critic_info}


class OrderOnlyIQL(D3rlpyOrderIQL):
    """d3rlpy's order, offrl's clamped log-std (started at d3rlpy's initial log-std)."""

    def build(self) -> None:
        IQL.build(self)


@pytest.fixture(scope="module")
def d3rlpy_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_iql.pt"
    return run_d3rlpy("same_update_iql.py", out, "--updates", "8")


def _replay(run: dict[str, Any], cls: type[IQL], steps: int) -> tuple[IQL, list[dict[str, float]]]:
    """``cls`` from d3rlpy's initial weights through its batches, in the run's dtype."""
    with default_dtype(run["dtype"]):
        config = IQLConfig(max_steps=steps, expectile=EXPECTILE)
        algo = cls(EnvSpec((17,), 6), config, seed=0)
        start = run["runs"]["d3rlpy"]["initial"]
        load_layers(algo.actor.net, [start["actor"]])
        load_layers(algo.critic.net, start["critics"])
        load_layers(algo.critic_target.net, start["critic_targets"])
        load_layers(algo.value.net, [start["value"]])
        head = algo.actor.head
        assert head.log_std is not None
        with torch.no_grad():
            if isinstance(head, SigmoidLogStdHead):
                head.log_std.copy_(start["actor_logstd"])
            else:  # offrl's own head, at the log-std d3rlpy starts from
                head.log_std.copy_(-5.0 + 7.0 * torch.sigmoid(start["actor_logstd"]))
        metrics = [algo.update(batch(b)) for b in run["batches"]]
    return algo, metrics


def _log_std(algo: IQL) -> torch.Tensor:
    """The policy's log-std, whichever parameterisation its head has."""
    head = algo.actor.head
    assert head.log_std is not None
    zeros = torch.zeros(1, algo.spec.action_dim, dtype=head.log_std.dtype)
    return head(zeros).scale.log()[0].detach()


def _weight_diff(algo: IQL, nets: dict[str, Any]) -> float:
    their_log_std = -5.0 + 7.0 * torch.sigmoid(nets["actor_logstd"])
    return max(
        max_diff(algo.actor.net, [nets["actor"]]),
        float((_log_std(algo) - their_log_std).abs().max()),
        max_diff(algo.critic.net, nets["critics"]),
        max_diff(algo.critic_target.net, nets["critic_targets"]),
        max_diff(algo.value.net, [nets["value"]]),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_d3rlpy_iql_is_offrls_losses_in_d3rlpys_order(
    d3rlpy_file: dict[str, Any], dtype: str
) -> None:
    assert d3rlpy_file["library"] == "d3rlpy 2.8.1"
    run = recorded(d3rlpy_file, dtype)
    theirs = run["runs"]["d3rlpy"]
    algo, metrics = _replay(run, D3rlpyOrderIQL, d3rlpy_file["cosine_steps"])
    names = {"value_loss": "v_loss", "critic_loss": "q_loss", "actor_loss": "actor_loss"}
    assert_metrics(metrics, theirs["metrics"], names, dtype)
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE[dtype].weights
    # The updates moved the weights ~100x further than float32's tolerance, so it can tell;
    # the cosine schedule took the actor's learning rate down to lr * (1 + cos(pi/2)) / 2.
    assert max_diff(algo.actor.net, [theirs["initial"]["actor"]]) > 1e-3
    assert max_diff(algo.value.net, [theirs["initial"]["value"]]) > 1e-3
    assert algo.actor_optim.param_groups[0]["lr"] == pytest.approx(1.5e-4)


def test_each_switched_choice_is_needed(d3rlpy_file: dict[str, Any]) -> None:
    """The check can fail, and each choice matters: offrl's own order (with d3rlpy's log-std),
    offrl's own log-std (with d3rlpy's order), or another cosine horizon, end elsewhere."""
    run = recorded(d3rlpy_file, "float64")
    final, steps = run["runs"]["d3rlpy"]["final"], d3rlpy_file["cosine_steps"]
    for cls, horizon in [(SigmoidStdIQL, steps), (OrderOnlyIQL, steps), (D3rlpyOrderIQL, 1000)]:
        algo, _ = _replay(run, cls, horizon)
        assert _weight_diff(algo, final) > 1e-6, cls.__name__
