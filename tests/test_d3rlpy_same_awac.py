"""offrl's AWAC update against d3rlpy 2.8.1's (``benchmarks/d3rlpy/same_update_awac.py``).

offrl's AWAC follows CORL's (and the paper's) recipe; d3rlpy's differs in four places, none of
which offrl has an option for:

* ``target`` -- d3rlpy's AWAC inherits SAC's critic target: ``a' = tanh(u)``,
  ``u ~ N(mu(s'), sigma)`` around the *unsquashed* mean, minus ``1 * log pi(a'|s')`` (SAC's
  entropy term with AWAC's dummy log-temperature 0); offrl (CORL) bootstraps with
  ``a' ~ N(tanh mu(s'), sigma)`` clipped to the box, the distribution its actor is trained as,
  without an entropy term.
* ``log_std`` -- d3rlpy's state-independent log-std is ``-6 + 6 sigmoid(p)`` (in ``[-6, 0]``);
  offrl's is ``p`` clamped to ``[-5, 2]`` (the replay starts both at d3rlpy's initial -3).
* ``weights`` -- d3rlpy normalises the weights over the batch, ``B softmax(A / lambda)``
  (mean 1, no clip); offrl's are ``min(exp(A / lambda), 100)`` (CORL, the paper).
* ``sum`` -- d3rlpy's actor loss sums over the batch, offrl's averages (the same direction,
  a gradient B times larger: Adam's step differs only through its eps).

With the four switched in the replay (:class:`D3rlpyAWAC`; the weights through offrl's own
``actor_loss`` with its weight function swapped), offrl's ``update()`` ends at d3rlpy's weights
after eight updates up to float32 rounding; with any one of them left at offrl's choice, it
does not. Needs d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
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

import offrl.algos.awac as awac_module
from offrl.algos import EnvSpec
from offrl.algos.awac import AWAC, AWACConfig
from offrl.algos.base import make_optimizer
from offrl.data.sampler import Batch
from offrl.losses import ensemble_td_loss, td_target
from offrl.nn.heads import GaussianHead, TanhGaussianHead

pytestmark = needs_d3rlpy

SWITCHES = ("target", "log_std", "weights", "sum")
"""d3rlpy's recipe choices, by name (see the module docstring)."""
LOG_STD_MIN, LOG_STD_MAX = -6.0, 0.0
"""d3rlpy's AWAC policy: ``create_normal_policy(min_logstd=-6.0, max_logstd=0.0,
use_std_parameter=True)``."""


def d3rlpy_log_std(p: torch.Tensor) -> torch.Tensor:
    """d3rlpy's ``NormalPolicy`` log-std from its free parameter ``p``."""
    return LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * torch.sigmoid(p)


class SigmoidStdHead(GaussianHead):
    """offrl's Gaussian head (mean ``tanh(mu)``) with d3rlpy's log-std ``-6 + 6 sigmoid(p)``."""

    def __init__(self, act_dim: int) -> None:
        super().__init__(act_dim, state_dependent_std=False)

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        assert self.log_std is not None
        return torch.distributions.Normal(torch.tanh(x), d3rlpy_log_std(self.log_std).exp())


def policy_log_std(head: GaussianHead) -> torch.Tensor:
    """The policy's log-std ``[act]``, as its head computes it."""
    assert head.log_std is not None
    if isinstance(head, SigmoidStdHead):
        return d3rlpy_log_std(head.log_std)
    return head.log_std.clamp(head.log_std_min, head.log_std_max)


def d3rlpy_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """d3rlpy's AWAC weights ``B softmax(beta A)`` over the batch (no clip), in place of
    offrl's ``advantage_weights``."""
    del max_weight
    return torch.softmax(beta * advantage.detach(), dim=0) * advantage.numel()


class D3rlpyAWAC(AWAC):
    """offrl's AWAC with the recipe choices named in :attr:`switches` switched to d3rlpy's
    (``weights`` is switched by :func:`_replay`, in offrl's ``actor_loss`` itself)."""

    switches: ClassVar[frozenset[str]] = frozenset(SWITCHES)

    def build(self) -> None:
        super().build()
        if "log_std" in self.switches:
            self.actor.head = SigmoidStdHead(self.spec.action_dim)
            self.actor_optim = make_optimizer(self.actor.parameters(), self.config.actor_lr)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if "target" not in self.switches:
            return super().critic_loss(batch)
        with torch.no_grad():  # SACImpl.compute_target, temperature exp(0) = 1
            mu = self.actor.net(batch.next_obs)[0]  # the unsquashed mean
            log_std = policy_log_std(self.actor.head).expand_as(mu)
            next_a, next_logp = TanhGaussianHead.sample_from(mu, log_std, self.generator)
            next_q = self.critic_target(batch.next_obs, next_a).amin(0) - next_logp
            target = td_target(batch.rewards, batch.dones, next_q, self.config.gamma)
        q = self.critic(batch.obs, batch.actions)
        loss = ensemble_td_loss(q, target)
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, info = super().actor_loss(batch)
        if "sum" in self.switches:
            loss = loss * batch.obs.shape[0]  # a power of two: the mean times B is the sum
            info["actor_loss"] = loss.detach()
        return loss, info


@pytest.fixture(scope="module")
def d3rlpy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_awac.pt"
    return run_d3rlpy("same_update_awac.py", out, "--updates", "8")


def _replay(
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    switches: frozenset[str] = frozenset(SWITCHES),
    noise_offset: int = 0,
) -> tuple[AWAC, list[dict[str, float]]]:
    """offrl's AWAC with ``switches`` switched to d3rlpy's, from d3rlpy's initial weights through
    its batches and noise, in the run's dtype."""
    with default_dtype(run["dtype"]):
        return _replay_in_dtype(run, monkeypatch, switches, noise_offset)


def _replay_in_dtype(
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    switches: frozenset[str],
    noise_offset: int,
) -> tuple[AWAC, list[dict[str, float]]]:
    cls = type("SwitchedAWAC", (D3rlpyAWAC,), {"switches": switches})
    algo = cls(EnvSpec((17,), 6), AWACConfig(), seed=0)
    start = run["runs"]["d3rlpy"]["initial"]
    load_layers(algo.actor.net, [start["actor"]])
    load_layers(algo.critic.net, start["critics"])
    load_layers(algo.critic_target.net, start["critic_targets"])
    assert algo.actor.head.log_std is not None
    with torch.no_grad():  # d3rlpy's parameter, or the log-std it stands for
        p = start["actor_logstd"]
        algo.actor.head.log_std.copy_(p if "log_std" in switches else d3rlpy_log_std(p))
    if "weights" in switches:
        monkeypatch.setattr(awac_module, "advantage_weights", d3rlpy_weights)
    noise = SeededNoise(algo.generator)
    metrics = []
    for b, seed in zip(run["batches"], run["noise_seeds"], strict=True):
        noise.start(seed + noise_offset)
        metrics.append(algo.update(batch(b)))
    monkeypatch.undo()
    return algo, metrics


def _weight_diff(algo: AWAC, nets: dict[str, Any]) -> float:
    head = algo.actor.head
    assert head.log_std is not None
    theirs = nets["actor_logstd"]
    if not isinstance(head, SigmoidStdHead):  # offrl's head holds the log-std itself
        theirs = d3rlpy_log_std(theirs)
    return max(
        max_diff(algo.actor.net, [nets["actor"]]),
        float((head.log_std.detach() - theirs).abs().max()),
        max_diff(algo.critic.net, nets["critics"]),
        max_diff(algo.critic_target.net, nets["critic_targets"]),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_d3rlpy_awac_is_offrls_with_its_four_choices_switched(
    d3rlpy_runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    assert d3rlpy_runs["library"] == "d3rlpy 2.8.1"
    run = recorded(d3rlpy_runs, dtype)
    theirs = run["runs"]["d3rlpy"]
    algo, metrics = _replay(run, monkeypatch)
    names = {"actor_loss": "actor_loss", "critic_loss": "critic_loss"}
    assert_metrics(metrics, theirs["metrics"], names, dtype)
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE[dtype].weights
    # The updates moved the weights ~1000x further than float32's tolerance.
    start = theirs["initial"]
    assert max_diff(algo.critic.net, start["critics"]) > 1e-3
    assert max_diff(algo.actor.net, [start["actor"]]) > 1e-3
    assert algo.actor.head.log_std is not None
    assert float((algo.actor.head.log_std.detach() - start["actor_logstd"]).abs().min()) > 1e-3


@pytest.mark.parametrize("kept", [None, *SWITCHES])
def test_each_choice_is_a_difference(
    d3rlpy_runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, kept: str | None
) -> None:
    """The check can fail: offrl's own update (``None``: no choice switched), or the update with
    every choice but ``kept`` switched, ends measurably away from d3rlpy's weights. In float64,
    where even ``sum`` shows (8e-7 after eight updates: Adam's eps against a gradient B times
    larger; in float32 that is within rounding, 3e-6)."""
    run = recorded(d3rlpy_runs, "float64")
    switches = frozenset(SWITCHES) - {kept} if kept else frozenset()
    algo, _ = _replay(run, monkeypatch, switches)
    assert _weight_diff(algo, run["runs"]["d3rlpy"]["final"]) > 100 * TOLERANCE["float64"].weights


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_noise_gives_other_weights(
    d3rlpy_runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    run = recorded(d3rlpy_runs, dtype)
    algo, _ = _replay(run, monkeypatch, noise_offset=1000)
    assert _weight_diff(algo, run["runs"]["d3rlpy"]["final"]) > 100 * TOLERANCE[dtype].weights
