"""d3rlpy 2.8.1's CRR, update by update, for a comparison with offrl's CRR.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_crr.py --out crr.pt

``CRRConfig`` at offrl's CRR settings (which are d3rlpy's, but for the target update and the
batch): lr 3e-4 for actor and critic, batch 256, one critic, gamma 0.99, beta 1, 4 policy
samples in the advantage's ``mean`` baseline, ``exp`` weights clipped at 20, hidden 256 x 2, a
Gaussian policy with a state-dependent log-std. Two runs from the same initial weights:

* ``soft`` -- offrl's default target update: Polyak with tau 5e-3 after every update, for the
  critic and the policy;
* ``hard`` -- d3rlpy's default kind, copies every ``target_update_interval`` updates (3 here
  rather than 100, so that copies happen within the run): d3rlpy copies after updates
  0, 3, 6, ...

d3rlpy's update draws from torch's global generator, seeded with ``noise_seed + k`` before
update ``k``: ``torch.randn [B, act]`` for the target policy's action at s' (critic step), then
``torch.randn [4, B, act]`` for the advantage's policy samples (actor step) -- the shapes and the
order in which offrl's CRR draws from its own generator. ``tests/test_d3rlpy_same_crr.py``
replays both runs in offrl.
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

HARD_INTERVAL = 3
"""Updates between the ``hard`` run's target copies."""


def networks(modules: Any) -> dict[str, Any]:
    return {
        "actor": normal_policy(modules.policy),
        "actor_target": normal_policy(modules.targ_policy),
        "critics": [mlp(q) for q in modules.q_funcs],
        "critic_targets": [mlp(q) for q in modules.targ_q_funcs],
    }


def run(args: Any, batches: list[dict[str, torch.Tensor]], target_update: str) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.CRRConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        batch_size=args.batch_size,
        gamma=0.99,
        beta=1.0,
        n_action_samples=4,
        advantage_type="mean",
        weight_type="exp",
        max_weight=20.0,
        n_critics=1,
        target_update_type=target_update,
        tau=5e-3,
        target_update_interval=HARD_INTERVAL,
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
    run_all(
        args,
        lambda batches: {kind: run(args, batches, kind) for kind in ("soft", "hard")},
        hard_interval=HARD_INTERVAL,
    )


if __name__ == "__main__":
    main()
