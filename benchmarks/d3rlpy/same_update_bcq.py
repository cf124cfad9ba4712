"""d3rlpy 2.8.1's BCQ (continuous), update by update, for a comparison with offrl's BCQ.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_bcq.py --out bcq.pt

``BCQConfig`` at offrl's BCQ settings (the official code's): lr 1e-3 for the VAE, the
perturbation actor and the critics, two critics, tau 0.005, gamma 0.99, lambda 0.75, Phi 0.05,
VAE KL weight 0.5, hidden (400, 300) for the actor and the critics, (750, 750) for the VAE's
encoder and decoder (d3rlpy's default is 256 x 2 for all), 10 VAE proposals per next state in
the target (d3rlpy's ``n_action_samples``, which d3rlpy also uses for acting), no warm-up, batch
100 (``--batch-size``).

d3rlpy draws from torch's global generator, seeded with ``noise_seed + k`` before update ``k``:
the VAE's reparameterisation noise ``torch.randn [B, latent]``, then the target's prior latents
``torch.randn [B * n, latent]`` (rows batch-major: row ``b * n + j`` is next state ``b``'s
``j``-th proposal), then the actor's prior latents ``torch.randn [B, latent]``. offrl takes the
same numbers with the target's rows sample-major, so they are recorded (``draws``), and the
script checks that the record leaves the generator exactly where d3rlpy's update left it.
``tests/test_d3rlpy_same_bcq.py`` replays the run in offrl.
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import torch
from d3rlpy.models.encoders import VectorEncoderFactory
from same_update_kit import (
    ACT_DIM,
    OBS_DIM,
    Layers,
    encoder,
    linear,
    minibatch,
    mlp,
    parser,
    run_all,
    to_dtype,
)

BATCH = 100
"""Transitions per update by default (offrl's and the official code's ``batch_size``)."""
N_SAMPLES = 10
"""VAE proposals per next state in the target."""
LATENT = 2 * ACT_DIM
"""d3rlpy's (and the official code's) latent size."""


def vae(encoder_module: Any, decoder_module: Any) -> dict[str, Layers]:
    """d3rlpy's ``VAEEncoder`` as one network whose output layer is ``[mu; log_std]`` (offrl's
    layout) and its ``VAEDecoder`` (encoder + ``_fc``)."""
    mu, log_std = linear(encoder_module._mu), linear(encoder_module._logstd)
    head = [torch.cat([mu[0], log_std[0]]), torch.cat([mu[1], log_std[1]])]
    return {"vae_encoder": [*encoder(encoder_module), head], "vae_decoder": mlp(decoder_module)}


def networks(modules: Any) -> dict[str, Any]:
    return {
        **vae(modules.vae_encoder, modules.vae_decoder),
        "actor": mlp(modules.policy),
        "actor_target": mlp(modules.targ_policy),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
    }


def record_draws(seed: int, batch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One update's draws in d3rlpy's order, and the generator's state after them."""
    torch.manual_seed(seed)
    draws = {
        "vae": torch.randn(batch, LATENT),
        "target": torch.randn(batch * N_SAMPLES, LATENT),
        "actor": torch.randn(batch, LATENT),
    }
    return draws, torch.get_rng_state()


def run(args: Any, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.BCQConfig(
        actor_learning_rate=1e-3,
        critic_learning_rate=1e-3,
        imitator_learning_rate=1e-3,
        actor_encoder_factory=VectorEncoderFactory(hidden_units=[400, 300]),
        critic_encoder_factory=VectorEncoderFactory(hidden_units=[400, 300]),
        imitator_encoder_factory=VectorEncoderFactory(hidden_units=[750, 750]),
        batch_size=args.batch_size,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        lam=0.75,
        n_action_samples=N_SAMPLES,
        action_flexibility=0.05,
        rl_start_step=0,
        beta=0.5,
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    initial = networks(impl._modules)
    metrics, draws = [], []
    for k, b in enumerate(batches):
        recorded, after = record_draws(args.noise_seed + k, args.batch_size)
        torch.manual_seed(args.noise_seed + k)
        metrics.append(impl.inner_update(minibatch(b), k))
        if not torch.equal(torch.get_rng_state(), after):
            raise SystemExit(f"update {k}: d3rlpy drew other random numbers than recorded")
        draws.append(recorded)
    return {
        "initial": initial,
        "final": networks(impl._modules),
        "metrics": metrics,
        "draws": draws,
    }


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, batch_size=BATCH).parse_args(argv)
    run_all(args, lambda batches: {"d3rlpy": run(args, batches)}, n_samples=N_SAMPLES)


if __name__ == "__main__":
    main()
