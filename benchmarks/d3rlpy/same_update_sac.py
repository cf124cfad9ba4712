"""d3rlpy 2.8.1's SAC, update by update, for a comparison with offrl's SAC.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_sac.py --out sac.pt

``SACConfig`` at offrl's (and the paper's) settings: lr 3e-4 for actor, critics and
temperature, batch 256, two critics, tau 0.005, gamma 0.99, initial temperature 1, hidden 256 x 2,
log-std clamped to [-20, 2]. Two runs from the same initial weights:

* ``d3rlpy`` -- d3rlpy's own ``inner_update``: the critic (target action a' ~ pi(s'), the first
  ``torch.randn`` of the update), then the temperature on log pi of a fresh a ~ pi(s) (the
  second draw), then the actor on that same sample with the *new* temperature, then the
  targets;
* ``offrl_order`` -- the temperature frozen (``temp_learning_rate=0``) and d3rlpy's own
  sub-steps called in offrl's order: ``update_actor`` (its draw first), ``update_critic``,
  ``update_critic_target``.

Both draw their noise from torch's global generator, seeded with ``noise_seed + k`` before
update ``k``; offrl draws the same shapes in the same order from a generator seeded the same.
Everything is done in float32 and again in float64 (``same_update_kit.run_all``).
``tests/test_d3rlpy_same_sac.py`` replays both in offrl.
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


def networks(modules: Any) -> dict[str, Any]:
    return {
        "actor": normal_policy(modules.policy),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
        "log_temp": parameter(modules.log_temp),
    }


def run(args: Any, batches: list[dict[str, torch.Tensor]], order: str) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.SACConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        temp_learning_rate=3e-4 if order == "d3rlpy" else 0.0,
        batch_size=args.batch_size,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        initial_temperature=1.0,
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    initial = networks(impl._modules)
    metrics = []
    for k, b in enumerate(batches):
        batch = minibatch(b)
        torch.manual_seed(args.noise_seed + k)
        if order == "d3rlpy":
            metrics.append(impl.inner_update(batch, k))
        else:
            step = impl.update_actor(batch)
            step.update(impl.update_critic(batch))
            impl.update_critic_target()
            metrics.append(step)
    return {"initial": initial, "final": networks(impl._modules), "metrics": metrics}


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    run_all(args, lambda batches: {o: run(args, batches, o) for o in ("d3rlpy", "offrl_order")})


if __name__ == "__main__":
    main()
