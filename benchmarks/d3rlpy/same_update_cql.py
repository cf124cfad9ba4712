"""d3rlpy 2.8.1's CQL, update by update, for a comparison with offrl's CQL.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_cql.py --out cql.pt

``CQLConfig`` at offrl's CQL settings where d3rlpy has them: actor lr 3e-5, critic lr 3e-4,
temperature lr 3e-5 (initial 1), two critics, tau 0.005, gamma 0.99, hidden 256 x 2,
conservative weight 10, 10 action samples, and d3rlpy's deterministic backup (the target at the
policy's mean action: offrl's ``mean_backup=True``). Batches of 64 transitions (``--batch-size``;
an update scores 31 x 64 actions per critic: the same code as at 256, a quarter of the work).
Three runs from the same initial weights:

* ``fixed`` -- alpha fixed (``alpha_learning_rate=0``, initial alpha 1, threshold 0: the
  penalty is ``10 * gap``, offrl's ``cql_alpha=10``), d3rlpy's own ``inner_update``;
* ``lagrange`` -- alpha tuned by dual gradient ascent (lr 3e-4 = offrl's critic lr, threshold
  10, initial 1), d3rlpy's own ``inner_update``;
* ``fixed_offrl_order`` -- alpha and the temperature fixed, d3rlpy's own sub-steps called in
  offrl's order: ``update_actor``, ``update_critic``, ``update_critic_target``.

d3rlpy draws from torch's global generator, seeded with ``noise_seed + k`` before update ``k``:
in its critic step ``torch.randn [n, B, act]`` for pi(s), the same for pi(s'), then the uniform
actions ``[B * n, act]`` (rows batch-major: row ``b * n + j`` is state ``b``'s ``j``-th sample);
in its actor step ``torch.randn [B, act]``. offrl takes the same draws in another order and
layout, so they are recorded (``draws``: the uniforms as ``x`` in ``[0, 1)`` with ``2 x - 1``
d3rlpy's action); the script checks that replaying the record leaves the generator exactly where
d3rlpy's update left it. The three runs are recorded in float64, the Lagrange one in float32
too (``same_update_kit.run_all``; why not all three: ``VARIANTS``).
``tests/test_d3rlpy_same_cql.py`` replays the runs in offrl.

``--calql`` records d3rlpy's ``CalQL`` instead (the same settings): every batch also carries a
return-to-go per row, ``0.3 * N(0, 1)`` from ``--data-seed`` (about the scale of the critics'
first values, so the floor ``max(Q, G)`` binds on part of the samples);
``tests/test_d3rlpy_same_calql.py`` replays them.
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import torch
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

N_SAMPLES = 10


def networks(modules: Any) -> dict[str, Any]:
    return {
        "actor": normal_policy(modules.policy),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
        "log_temp": parameter(modules.log_temp),
        "log_alpha": parameter(modules.log_alpha),
    }


def record_draws(
    seed: int, rows: int, actor_first: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The draws of one update of ``rows`` transitions in d3rlpy's order, and the generator's
    state after them."""
    torch.manual_seed(seed)
    draws = {}
    if actor_first:
        draws["actor"] = torch.randn(rows, ACT_DIM)
    draws["pi_obs"] = torch.randn(N_SAMPLES, rows, ACT_DIM)
    draws["pi_next_obs"] = torch.randn(N_SAMPLES, rows, ACT_DIM)
    draws["uniform"] = torch.rand(rows * N_SAMPLES, ACT_DIM)
    if not actor_first:
        draws["actor"] = torch.randn(rows, ACT_DIM)
    return draws, torch.get_rng_state()


def run(args: Any, batches: list[dict[str, torch.Tensor]], variant: str) -> dict[str, Any]:
    lagrange = variant == "lagrange"
    offrl_order = variant == "fixed_offrl_order"
    torch.manual_seed(args.seed)
    config_class = d3rlpy.algos.CalQLConfig if args.calql else d3rlpy.algos.CQLConfig
    algo = config_class(
        actor_learning_rate=3e-5,
        critic_learning_rate=3e-4,
        temp_learning_rate=0.0 if offrl_order else 3e-5,
        alpha_learning_rate=3e-4 if lagrange else 0.0,
        batch_size=args.batch_size,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        initial_temperature=1.0,
        initial_alpha=1.0,
        alpha_threshold=10.0 if lagrange else 0.0,
        conservative_weight=10.0,
        n_action_samples=N_SAMPLES,
        soft_q_backup=False,
        max_q_backup=False,
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    initial = networks(impl._modules)
    metrics, draws = [], []
    for k, b in enumerate(batches):
        batch = minibatch(b)
        recorded, after = record_draws(args.noise_seed + k, len(b["obs"]), offrl_order)
        torch.manual_seed(args.noise_seed + k)
        if offrl_order:
            step = impl.update_actor(batch)
            step.update(impl.update_critic(batch))
            impl.update_critic_target()
        else:
            step = impl.inner_update(batch, k)
        if not torch.equal(torch.get_rng_state(), after):
            raise SystemExit(f"update {k}: d3rlpy drew other random numbers than recorded")
        metrics.append(step)
        draws.append(recorded)
    return {
        "initial": initial,
        "final": networks(impl._modules),
        "metrics": metrics,
        "draws": draws,
    }


# float32 cannot settle the critics' weights (``tests/_d3rlpy_replay.py``: Adam's first step
# amplifies gradients that cancel to rounding level), so float32 records the run that has every
# parameter; float64 records all three (a CQL update takes ~0.2 s in d3rlpy on one CPU thread).
VARIANTS = {"float32": ("lagrange",), "float64": ("fixed", "lagrange", "fixed_offrl_order")}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, batch_size=64)
    p.add_argument("--calql", action="store_true", help="d3rlpy's CalQL instead of its CQL")
    args = p.parse_args(argv)

    def runs(batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        dtype = str(torch.get_default_dtype()).removeprefix("torch.")
        if args.calql:  # saved with the batches (the same dicts)
            g = torch.Generator().manual_seed(args.data_seed + 1)
            for b in batches:
                rtg = 0.3 * torch.randn(len(b["obs"]), generator=g, dtype=torch.float32)
                b["returns_to_go"] = rtg.to(b["obs"].dtype)
        return {v: run(args, batches, v) for v in VARIANTS[dtype]}

    run_all(args, runs, algo="calql" if args.calql else "cql")


if __name__ == "__main__":
    main()
