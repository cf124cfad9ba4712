"""d3rlpy 2.8.1's AWAC, update by update, for a comparison with offrl's AWAC.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_awac.py --out awac.pt

``AWACConfig`` at offrl's AWAC settings (CORL's): lr 3e-4 for actor and critics, batch 256, two
critics, tau 5e-3, gamma 0.99, lambda 1, one policy sample for V(s), hidden 256 x 2. d3rlpy's
own update (``inner_update``): the critic on ``SACImpl``'s target (AWAC inherits it), then the
actor on the advantage-weighted log-likelihood, then the target critics.

d3rlpy draws from torch's global generator, seeded with ``noise_seed + k`` before update
``k``: ``torch.randn [B, act]`` for the target's a' ~ pi(s') (critic step), then
``torch.randn [1, B, act]`` for V(s)'s policy sample (actor step) -- as many numbers, in the
order offrl's AWAC draws them from its own generator. The policy's log-std is a free parameter
(``use_std_parameter``), saved raw as ``actor_logstd`` (d3rlpy's log-std is
``-6 + 6 sigmoid(actor_logstd)``). ``tests/test_d3rlpy_same_awac.py`` replays the run in offrl.
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
    }


def run(args: Any, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.AWACConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        batch_size=args.batch_size,
        gamma=0.99,
        tau=5e-3,
        lam=1.0,
        n_action_samples=1,
        n_critics=2,
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
    args = parser(__doc__).parse_args(argv)
    run_all(args, lambda batches: {"d3rlpy": run(args, batches)})


if __name__ == "__main__":
    main()
