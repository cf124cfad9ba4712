"""offrl's BCQ update against d3rlpy 2.8.1's (``benchmarks/d3rlpy/same_update_bcq.py``).

offrl's BCQ follows the official code (github.com/sfujim/BCQ); d3rlpy's differs in one place:

* ``decoder`` -- d3rlpy's VAE decoder has no ``tanh``: ``VAEDecoder``'s default
  ``with_squash=True`` returns the last linear layer's output, in the VAE's reconstruction
  loss and for every proposal BCQ perturbs (its actor clips the perturbed action to the box);
  the official code's decoder, and offrl's, is ``max_action * tanh(...)``.

With that switched in the replay (:class:`_d3rlpy_vae.D3rlpyDecoderVAE`), offrl's own
``update()`` ends at
d3rlpy's weights after eight updates, to rounding in float32 and in float64; without it, it
does not. d3rlpy's draws are the numbers offrl takes, but the target's proposals come in
another row order (d3rlpy: batch-major, offrl: sample-major), so the test serves d3rlpy's
recorded draws to offrl's unchanged draw calls (:class:`_d3rlpy_replay.ScriptedDraws`).

d3rlpy builds its target perturbation actor from its own random initialisation (only the
target critics are copied at construction), so the two actors start ~0.4 apart; the replay
loads both as d3rlpy has them. Needs d3rlpy's virtual environment
(``bash benchmarks/d3rlpy/setup.sh``; CI builds it).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _d3rlpy import load_layers, max_diff, needs_d3rlpy, run_d3rlpy
from _d3rlpy_replay import (
    DTYPES,
    TOLERANCE,
    ScriptedDraws,
    assert_metrics,
    batch,
    default_dtype,
    recorded,
)
from _d3rlpy_vae import use_d3rlpy_decoder

from offrl.algos import EnvSpec
from offrl.algos.bcq import BCQ, BCQConfig

pytestmark = needs_d3rlpy


@pytest.fixture(scope="module")
def d3rlpy_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("d3rlpy") / "same_bcq.pt"
    return run_d3rlpy("same_update_bcq.py", out, "--updates", "8")


def _offrl_draws(d: dict[str, torch.Tensor], n: int) -> list[tuple[str, torch.Tensor]]:
    """One update's recorded draws as offrl's BCQ takes them: the VAE's noise ``[B, latent]``,
    the target's latents ``[n * B, latent]`` in sample-major rows (row ``j * B + b`` is next
    state ``b``; d3rlpy's are batch-major), the actor's latents ``[B, latent]``. Copies: offrl
    clips its latents in place."""
    b, latent = d["vae"].shape
    target = d["target"].view(b, n, latent).transpose(0, 1).reshape(n * b, latent)
    return [("randn", d["vae"].clone()), ("randn", target), ("randn", d["actor"].clone())]


def _replay(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, decoder: bool = True, shift: int = 0
) -> tuple[BCQ, list[dict[str, float]]]:
    """offrl's BCQ, with d3rlpy's decoder if ``decoder``, from d3rlpy's initial weights through
    its batches and draws (update ``k`` gets update ``k + shift``'s draws), in the run's dtype."""
    with default_dtype(run["dtype"]):
        config = BCQConfig()
        algo = BCQ(EnvSpec((17,), 6), config, seed=0)
        if decoder:
            use_d3rlpy_decoder(algo, 17, 6, config.vae_hidden)
        start = run["runs"]["d3rlpy"]["initial"]
        load_layers(algo.vae.encoder, [start["vae_encoder"]])
        load_layers(algo.vae.decoder, [start["vae_decoder"]])
        load_layers(algo.actor.net, [start["actor"]])
        load_layers(algo.actor_target.net, [start["actor_target"]])
        load_layers(algo.critic.net, start["critics"])
        load_layers(algo.critic_target.net, start["critic_targets"])
        noise = ScriptedDraws(monkeypatch, algo.generator)
        draws = run["runs"]["d3rlpy"]["draws"]
        metrics = []
        for k, b in enumerate(run["batches"]):
            noise.start(_offrl_draws(draws[(k + shift) % len(draws)], int(run["n_samples"])))
            metrics.append(algo.update(batch(b)))
            noise.done()
        monkeypatch.undo()
    return algo, metrics


def _weight_diff(algo: BCQ, nets: dict[str, Any]) -> float:
    return max(
        max_diff(algo.vae.encoder, [nets["vae_encoder"]]),
        max_diff(algo.vae.decoder, [nets["vae_decoder"]]),
        max_diff(algo.actor.net, [nets["actor"]]),
        max_diff(algo.actor_target.net, [nets["actor_target"]]),
        max_diff(algo.critic.net, nets["critics"]),
        max_diff(algo.critic_target.net, nets["critic_targets"]),
    )


def _run(saved: dict[str, Any], dtype: str) -> dict[str, Any]:
    return {**recorded(saved, dtype), "n_samples": saved["n_samples"]}


@pytest.mark.parametrize("dtype", DTYPES)
def test_d3rlpy_bcq_is_offrls_with_its_decoder(
    d3rlpy_runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    assert d3rlpy_runs["library"] == "d3rlpy 2.8.1"
    run = _run(d3rlpy_runs, dtype)
    theirs = run["runs"]["d3rlpy"]
    algo, metrics = _replay(run, monkeypatch)
    names = {"vae_loss": "vae_loss", "critic_loss": "critic_loss", "actor_loss": "actor_loss"}
    assert_metrics(metrics, theirs["metrics"], names, dtype)
    assert _weight_diff(algo, theirs["final"]) < TOLERANCE[dtype].weights
    # The updates moved every network ~1000x further than float32's tolerance.
    start = theirs["initial"]
    assert max_diff(algo.vae.decoder, [start["vae_decoder"]]) > 1e-3
    assert max_diff(algo.actor.net, [start["actor"]]) > 1e-3
    assert max_diff(algo.critic.net, start["critics"]) > 1e-3


def test_offrls_decoder_and_other_draws_differ(
    d3rlpy_runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check can fail: offrl's own BCQ (``tanh`` decoder) from the same start and draws,
    and the switched one fed each update the next one's draws, end ~1e-2 away (float32 shows
    that; float64 only adds time: a 750 x 750 VAE)."""
    run = _run(d3rlpy_runs, "float32")
    final = run["runs"]["d3rlpy"]["final"]
    far = 100 * TOLERANCE["float32"].weights
    algo, _ = _replay(run, monkeypatch, decoder=False)
    assert _weight_diff(algo, final) > far
    algo, _ = _replay(run, monkeypatch, shift=1)
    assert _weight_diff(algo, final) > far
