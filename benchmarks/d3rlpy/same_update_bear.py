"""d3rlpy 2.8.1's BEAR, update by update, for a comparison with offrl's BEAR.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_bear.py --out bear.pt

``BEARConfig`` at offrl's BEAR settings (d3rlpy's defaults, which offrl's follow): lr 1e-4
actor, 3e-4 critics and VAE, 1e-4 temperature, two critics, tau 0.005, gamma 0.99,
initial temperature and multiplier 1, epsilon 0.05, lambda 0.75, 10 target samples, 4 MMD
samples, Laplacian kernel, sigma 20, VAE KL weight 0.5, hidden 256 x 2 for the policy and the
critics, and (750, 750) for the VAE (offrl's ``vae_hidden``, the official code's; d3rlpy's
default is 256 x 2). Batch 100 (``--batch-size``; both libraries' default is 256): the update is
the same function of any batch, and 100 keeps the 750-wide VAE's replays quick. d3rlpy steps
the multiplier with the actor's learning rate whatever its
``alpha_learning_rate`` says (1e-4 here; offrl's ``lagrange_lr``). Two runs from the same
initial weights:

* ``warmup`` -- d3rlpy's default warm-up (40,000 steps): every update is VAE, critics, then the
  actor on ``alpha (MMD - epsilon)`` alone; the temperature and the multiplier stay put;
* ``rl`` -- no warm-up (``warmup_steps=0``): VAE, critics, then the actor step, which inside
  steps the temperature on the actor's sample, then the multiplier on the MMD, then the actor
  on ``T log pi - min Q + alpha (MMD - epsilon)``.

d3rlpy draws from torch's global generator, seeded with ``noise_seed + k`` before update ``k``:
the VAE's noise ``[B, latent]``; the target's policy samples ``[10, B, act]``; in the ``rl``
run the actor's sample ``[B, act]``; then the MMD's prior latents ``[4 * B, latent]`` and the
policy's pre-``tanh`` samples ``[4, B, act]`` (each sample-major, as offrl's). offrl draws the
same shapes from its own generator, seeded the same. ``tests/test_d3rlpy_same_bear.py``
replays both runs in offrl.
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import torch
from d3rlpy.models.encoders import VectorEncoderFactory
from same_update_bcq import vae
from same_update_kit import (
    ACT_DIM,
    OBS_DIM,
    minibatch,
    mlp,
    normal_policy,
    parameter,
    parser,
    run_all,
    to_dtype,
)

BATCH = 100
"""Transitions per update by default."""


def networks(modules: Any) -> dict[str, Any]:
    return {
        **vae(modules.vae_encoder, modules.vae_decoder),
        "actor": normal_policy(modules.policy),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
        "log_temp": parameter(modules.log_temp),
        "log_alpha": parameter(modules.log_alpha),
    }


def run(args: Any, batches: list[dict[str, torch.Tensor]], warmup: bool) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.BEARConfig(
        actor_learning_rate=1e-4,
        critic_learning_rate=3e-4,
        imitator_learning_rate=3e-4,
        temp_learning_rate=1e-4,
        alpha_learning_rate=1e-4,  # not read: d3rlpy steps alpha with actor_learning_rate
        imitator_encoder_factory=VectorEncoderFactory(hidden_units=[750, 750]),
        batch_size=args.batch_size,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        initial_temperature=1.0,
        initial_alpha=1.0,
        alpha_threshold=0.05,
        lam=0.75,
        n_target_samples=10,
        n_mmd_action_samples=4,
        mmd_kernel="laplacian",
        mmd_sigma=20.0,
        vae_kl_weight=0.5,
        warmup_steps=40_000 if warmup else 0,
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    initial = networks(impl._modules)
    metrics = []
    for k, b in enumerate(batches):
        torch.manual_seed(args.noise_seed + k)
        metrics.append(impl.inner_update(minibatch(b), k))
    return {"initial": initial, "final": networks(impl._modules), "metrics": metrics}


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, batch_size=BATCH).parse_args(argv)
    run_all(
        args,
        lambda batches: {kind: run(args, batches, kind == "warmup") for kind in ("warmup", "rl")},
    )


if __name__ == "__main__":
    main()
