"""d3rlpy 2.8.1's IQL, update by update, for a comparison with offrl's IQL.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_iql.py --out iql.pt

``IQLConfig`` at the paper's and offrl's settings: lr 3e-4 for actor, critics and value, the
actor's cosine-annealed over ``--cosine-steps`` updates (16 by default, so that eight updates
move along it; offrl's ``max_steps``), batch 256, two critics, tau 0.005, gamma 0.99, expectile
0.7, inverse temperature 3, weights clipped at 100, hidden 256 x 2. d3rlpy's own
``inner_update``: one Adam step on Q and V together (the Q target ``V(s')`` from the value
*before* that step), then the actor (advantages from the new V), then the targets. IQL draws no
random numbers.

The policy's log-std is d3rlpy's free parameter ``p`` (``use_std_parameter``), ``log_std = -5 +
7 sigmoid(p)``: saved as ``actor_logstd``; the actor network is the mean only. Everything is
done in float32 and again in float64 (``same_update_kit.run_all``).
``tests/test_d3rlpy_same_iql.py`` replays the run in offrl.
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
    parser,
    run_all,
    to_dtype,
)


def networks(modules: Any) -> dict[str, Any]:
    return {
        "actor": normal_policy(modules.policy),
        "actor_logstd": modules.policy._logstd.detach().clone().view(-1),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
        "value": mlp(modules.value_func),
    }


def run(args: Any, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    schedule = d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=args.cosine_steps)
    algo = d3rlpy.algos.IQLConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=schedule),
        batch_size=args.batch_size,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        expectile=0.7,
        weight_temp=3.0,
        max_weight=100.0,
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    initial = networks(impl._modules)
    metrics = [impl.inner_update(minibatch(b), k) for k, b in enumerate(batches)]
    return {"initial": initial, "final": networks(impl._modules), "metrics": metrics}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--cosine-steps", type=int, default=16, help="the actor's cosine T_max")
    args = p.parse_args(argv)
    run_all(args, lambda batches: {"d3rlpy": run(args, batches)}, cosine_steps=args.cosine_steps)


if __name__ == "__main__":
    main()
