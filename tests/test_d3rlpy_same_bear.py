"""offrl's BEAR update against d3rlpy 2.8.1's (``benchmarks/d3rlpy/same_update_bear.py``), in
warm-up (d3rlpy's default: its first 40,000 updates) and after it.

offrl's BEAR is d3rlpy's SAC-based form, configured as d3rlpy where it has the option
(``lagrange_lr=1e-4``: d3rlpy steps the multiplier with the actor's learning rate). The choices
left, each switched in the replay by :class:`D3rlpySupport` / :class:`D3rlpyBEAR`:

* ``decoder`` (both phases) -- d3rlpy's VAE decoder: trained without ``tanh``, and squashed for
  the MMD's behaviour samples, while the policy's are pre-``tanh`` (see :mod:`_d3rlpy_vae`).
  offrl, as the official code, trains through the ``tanh`` and matches pre-``tanh`` samples.
* ``frozen`` (warm-up) -- d3rlpy steps neither the temperature nor the multiplier during
  warm-up; offrl steps both every update (documented in :mod:`offrl.algos.bear`).
* ``order`` (after warm-up) -- d3rlpy steps the temperature on the actor's sample first and
  the actor's loss then uses the new temperature, and it draws that sample before the MMD's;
  offrl steps the actor, then the temperature, and draws the MMD's samples first.
* ``temperature`` (after warm-up) -- d3rlpy's temperature loss is in ``alpha = exp(log alpha)``,
  offrl's in ``log alpha`` (as :class:`_d3rlpy_replay.D3rlpyOrder` for SAC).
* ``mmd_gradient`` (after warm-up) -- a d3rlpy bug: its multiplier step backpropagates
  ``-alpha (MMD - epsilon)`` into the policy too, and ``compute_actor_grad`` has already zeroed
  the policy's gradients, so that gradient adds to the actor's and cancels its constraint term:
  after warm-up d3rlpy's actor follows SAC's gradient alone (the MMD term still counts in the
  reported ``actor_loss``). offrl's actor gets the constraint's gradient, as in the paper.

With each phase's choices switched, offrl's losses end at d3rlpy's weights after eight updates
(VAE, policy, critics, targets, log-temperature and log-alpha), to rounding in float32 and in
float64; with any one left at offrl's choice, they do not. Needs d3rlpy's virtual
environment (``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
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
    scalar_diff,
    set_scalar,
)
from _d3rlpy_vae import use_d3rlpy_decoder

from offrl.algos import EnvSpec
from offrl.algos.base import soft_update
from offrl.algos.bear import BEAR, BEARConfig
from offrl.algos.sac import SAC
from offrl.algos.support import SupportConstraint
from offrl.data.sampler import Batch

pytestmark = needs_d3rlpy

Info = dict[str, torch.Tensor]

SWITCHES = {
    "warmup": ("decoder", "frozen"),
    "rl": ("decoder", "order", "temperature", "mmd_gradient"),
}
"""d3rlpy's choices in each run, by name (see the module docstring)."""


class D3rlpySupport(SupportConstraint):
    """offrl's support constraint with the choices in :attr:`switches` switched to d3rlpy's
    (``order`` and ``mmd_gradient``; the others are set up by :func:`_replay`)."""

    switches: frozenset[str] = frozenset()

    def actor_loss(self, algo: SAC, batch: Batch) -> tuple[torch.Tensor, Info]:
        if "mmd_gradient" not in self.switches or self.warming_up(algo.num_updates):
            return super().actor_loss(algo, batch)
        # offrl's actor loss with the constraint's gradient cancelled, as d3rlpy's.
        penalty, info = self.penalty(batch.obs, algo.actor)
        rl_loss, rl_info = algo.actor_loss(batch)
        loss = penalty.detach() + rl_loss
        return loss, {**info, **rl_info, "actor_loss": loss.detach()}

    def train_step(self, algo: SAC, batch: Batch) -> dict[str, torch.Tensor | float]:
        if "order" not in self.switches or self.warming_up(algo.num_updates):
            return super().train_step(algo, batch)
        # d3rlpy's BEARImpl.inner_update after warm-up, from offrl's losses.
        vae_loss, info = self.vae_loss(batch)
        algo.optimize(self.vae_optim, vae_loss)
        critic_loss, critic_info = algo.critic_loss(batch)
        algo.optimize(algo.critic_optim, critic_loss)
        mark = self.generator.get_state()
        _, rl_info = algo.actor_loss(batch)  # the actor's sample and its log pi
        alpha_loss, alpha_info = algo.alpha_loss(rl_info["_log_prob"])
        algo.optimize(algo.alpha_optim, alpha_loss)
        self.generator.set_state(mark)  # the same sample again, now with the new temperature
        rl_loss, rl_info = algo.actor_loss(batch)
        penalty, actor_info = self.penalty(batch.obs, algo.actor)
        lagrange_loss, lagrange_info = self.lagrange_loss(actor_info.pop("_mmd"))
        algo.optimize(self.lagrange_optim, lagrange_loss)
        self.clamp()
        cancelled = "mmd_gradient" in self.switches
        actor_loss = rl_loss + (penalty.detach() if cancelled else penalty)
        algo.optimize(algo.actor_optim, actor_loss)
        soft_update(algo.critic_target, algo.critic, algo.config.tau)
        del rl_info["_log_prob"]
        return {
            **info,
            **critic_info,
            **rl_info,
            **actor_info,
            "actor_loss": actor_loss.detach(),
            **alpha_info,
            **lagrange_info,
        }


class D3rlpyBEAR(BEAR):
    """offrl's BEAR with :class:`D3rlpySupport` and, with ``temperature``, d3rlpy's
    temperature loss."""

    switches: ClassVar[frozenset[str]] = frozenset()

    def build(self) -> None:
        super().build()
        self.support = D3rlpySupport(self.spec, self.config, self.generator, self.device)
        self.support.switches = self.switches

    def alpha_loss(self, log_prob: torch.Tensor) -> tuple[torch.Tensor, Info]:
        if "temperature" not in self.switches:
            return super().alpha_loss(log_prob)
        loss = -(self.log_alpha().exp() * (log_prob + self.target_entropy)).mean()
        return loss, {"alpha_loss": loss.detach(), "alpha": self.alpha()}


@pytest.fixture(scope="module")
def d3rlpy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_bear.pt"
    return run_d3rlpy("same_update_bear.py", out, "--updates", "8")


def _replay(
    run: dict[str, Any], kind: str, switches: frozenset[str] | None = None, noise_offset: int = 0
) -> tuple[BEAR, list[dict[str, float]]]:
    """offrl's BEAR with ``switches`` (default: all of the run's) switched to d3rlpy's, from
    d3rlpy's initial weights through its batches and noise, in the run's dtype."""
    switches = frozenset(SWITCHES[kind]) if switches is None else switches
    warmup = 40_000 if kind == "warmup" else 0
    config = BEARConfig(lagrange_lr=1e-4, warmup_steps=warmup)
    with default_dtype(run["dtype"]):
        cls = type("SwitchedBEAR", (D3rlpyBEAR,), {"switches": switches})
        algo = cls(EnvSpec((17,), 6), config, seed=0)
        support = algo.support
        if "decoder" in switches:
            use_d3rlpy_decoder(support, 17, 6, config.vae_hidden)
        if "frozen" in switches:  # no temperature or multiplier step in warm-up
            algo.alpha_optim.param_groups[0]["lr"] = 0.0
            support.lagrange_optim.param_groups[0]["lr"] = 0.0
        start = run["runs"][kind]["initial"]
        load_layers(support.vae.encoder, [start["vae_encoder"]])
        load_layers(support.vae.decoder, [start["vae_decoder"]])
        load_layers(algo.actor.net, [start["actor"]])
        load_layers(algo.critic.net, start["critics"])
        load_layers(algo.critic_target.net, start["critic_targets"])
        set_scalar(algo.log_alpha.value, start["log_temp"])
        set_scalar(support.log_lagrange.value, start["log_alpha"])
        noise = SeededNoise(algo.generator)
        metrics = []
        for b, seed in zip(run["batches"], run["noise_seeds"], strict=True):
            noise.start(seed + noise_offset)
            metrics.append(algo.update(batch(b)))
    return algo, metrics


def _weight_diff(algo: BEAR, nets: dict[str, Any]) -> float:
    return max(
        max_diff(algo.support.vae.encoder, [nets["vae_encoder"]]),
        max_diff(algo.support.vae.decoder, [nets["vae_decoder"]]),
        max_diff(algo.actor.net, [nets["actor"]]),
        max_diff(algo.critic.net, nets["critics"]),
        max_diff(algo.critic_target.net, nets["critic_targets"]),
        scalar_diff(algo.log_alpha.value, nets["log_temp"]),
        scalar_diff(algo.support.log_lagrange.value, nets["log_alpha"]),
    )


METRICS = {
    "warmup": {
        "vae_loss": "imitator_loss",
        "critic_loss": "critic_loss",
        "actor_loss": "actor_loss",
    },
    "rl": {
        "vae_loss": "imitator_loss",
        "critic_loss": "critic_loss",
        "actor_loss": "actor_loss",
        "alpha_loss": "temp_loss",
    },
}
"""offrl's reported losses and d3rlpy's names for them."""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["warmup", "rl"])
def test_d3rlpy_bear_is_offrls_with_its_choices_switched(
    d3rlpy_runs: dict[str, Any], kind: str, dtype: str
) -> None:
    assert d3rlpy_runs["library"] == "d3rlpy 2.8.1"
    run = recorded(d3rlpy_runs, dtype)
    theirs = run["runs"][kind]
    algo, metrics = _replay(run, kind)
    assert_metrics(metrics, theirs["metrics"], METRICS[kind], dtype)
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE[dtype].weights
    # The updates moved every network 50x-100x further than float32's tolerance (the policy
    # at most 8 x its lr 1e-4).
    start = theirs["initial"]
    assert max_diff(algo.support.vae.decoder, [start["vae_decoder"]]) > 1e-3
    assert max_diff(algo.actor.net, [start["actor"]]) > 5e-4
    assert max_diff(algo.critic.net, start["critics"]) > 1e-3
    if kind == "rl":  # both multipliers moved (8 steps of lr 1e-4)
        assert scalar_diff(algo.log_alpha.value, start["log_temp"]) > 1e-4
        assert scalar_diff(algo.support.log_lagrange.value, start["log_alpha"]) > 1e-4


@pytest.mark.parametrize(
    ("kind", "kept"),
    [(kind, kept) for kind in SWITCHES for kept in (None, *SWITCHES[kind])],
)
def test_each_choice_is_a_difference(
    d3rlpy_runs: dict[str, Any], kind: str, kept: str | None
) -> None:
    """The check can fail: offrl's own update (``None``: no choice switched), or the update with
    every choice but ``kept`` switched, ends measurably away from d3rlpy's weights: 6e-4..2e-3
    in float32, and the temperature's loss, which eight steps of lr 1e-4 at a temperature ~1
    barely tell apart, 1.7e-8 in log-temperature in float64 (17x its tolerance, 3e5x the
    rounding seen there)."""
    dtype = "float64" if kept == "temperature" else "float32"
    run = recorded(d3rlpy_runs, dtype)
    switches = frozenset(SWITCHES[kind]) - {kept} if kept else frozenset()
    algo, _ = _replay(run, kind, switches)
    assert _weight_diff(algo, run["runs"][kind]["final"]) > 10 * TOLERANCE[dtype].weights


def test_other_noise_gives_other_weights(d3rlpy_runs: dict[str, Any]) -> None:
    run = recorded(d3rlpy_runs, "float32")
    algo, _ = _replay(run, "rl", noise_offset=1000)
    assert _weight_diff(algo, run["runs"]["rl"]["final"]) > 100 * TOLERANCE["float32"].weights
