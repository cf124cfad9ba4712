"""d3rlpy 2.8.1's FQE, update by update, for a comparison with offrl's :class:`offrl.ope.FQE`.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_fqe.py --out fqe.pt

It builds a TD3PlusBC policy (random initial weights: FQE evaluates any fixed policy) and
d3rlpy's ``FQE`` of it (``FQEConfig`` defaults but a target copy every 3 updates, so that
several copies happen), makes a seeded table of ``--rows`` transitions, and runs d3rlpy's own
update on ``--updates`` seeded batches of those rows. FQE draws no random numbers.

``--out`` gets, in plain tensors (``torch.load(weights_only=True)`` reads it): the table, the
policy's action at every row's observation and next observation (``predict_best_action``,
what d3rlpy's update uses), the rows of each batch, the Q-function's and its target's
initial and final weights (``[[W [out, in], b [out]], ...]`` per layer), and each update's
loss. ``tests/test_d3rlpy_same_update.py`` replays it through offrl's FQE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import d3rlpy
import torch
from d3rlpy.torch_utility import TorchMiniBatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from same_update import layers  # noqa: E402  (the same layer layout as TD3PlusBC's critics)

OBS_DIM, ACT_DIM = 17, 6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--updates", type=int, default=8)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--interval", type=int, default=3, help="FQE's target_update_interval")
    p.add_argument("--seed", type=int, default=0, help="d3rlpy's weight initialisation")
    p.add_argument("--data-seed", type=int, default=1)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    policy = d3rlpy.algos.TD3PlusBCConfig().create(device="cpu")
    policy.create_impl((OBS_DIM,), ACT_DIM)
    config = d3rlpy.ope.FQEConfig(target_update_interval=args.interval)
    fqe = d3rlpy.ope.FQE(algo=policy, config=config, device="cpu")
    fqe.create_impl((OBS_DIM,), ACT_DIM)
    impl = fqe.impl
    q, q_target = impl._modules.q_funcs[0], impl._modules.targ_q_funcs[0]
    initial = {"q": layers(q), "q_target": layers(q_target)}

    g = torch.Generator().manual_seed(args.data_seed)
    n = args.rows
    table = {
        "obs": torch.randn(n, OBS_DIM, generator=g),
        "actions": torch.rand(n, ACT_DIM, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, OBS_DIM, generator=g),
        "dones": (torch.rand(n, generator=g) < 0.1).float(),
    }
    with torch.no_grad():
        pi_obs = policy.impl.predict_best_action(table["obs"])
        pi_next = policy.impl.predict_best_action(table["next_obs"])
    rows, losses = [], []
    for k in range(args.updates):
        idx = torch.randint(0, n, (config.batch_size,), generator=g)
        rows.append(idx)
        batch = TorchMiniBatch(
            observations=table["obs"][idx],
            actions=table["actions"][idx],
            rewards=table["rewards"][idx][:, None],
            next_observations=table["next_obs"][idx],
            next_actions=torch.zeros(len(idx), ACT_DIM),  # unused by FQE
            returns_to_go=torch.zeros(len(idx), 1),  # unused by FQE
            terminals=table["dones"][idx][:, None],
            intervals=torch.ones(len(idx), 1),
            device="cpu",
        )
        losses.append(impl.inner_update(batch, k)["loss"])
    torch.save(
        {
            "library": f"d3rlpy {d3rlpy.__version__}",
            "config": {
                "lr": config.learning_rate,
                "batch_size": config.batch_size,
                "gamma": config.gamma,
                "n_critics": config.n_critics,
                "target_update_interval": config.target_update_interval,
            },
            "table": table,
            "pi_obs": pi_obs,
            "pi_next_obs": pi_next,
            "rows": rows,
            "initial": initial,
            "final": {"q": layers(q), "q_target": layers(q_target)},
            "losses": losses,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
