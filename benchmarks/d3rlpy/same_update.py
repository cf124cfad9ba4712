"""d3rlpy 2.8.1's TD3PlusBC, update by update, for a comparison with offrl's TD3+BC.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update.py --out d3rlpy.pt

It builds TD3PlusBC at the paper's settings (observation dim 17, action dim 6, hidden 256 x 2),
draws ``--updates`` seeded batches (``--dtype float64``: everything in float64), and runs
d3rlpy's own update on each. Before update ``k`` it seeds torch's global generator with
``noise_seed + k``: d3rlpy's target-policy smoothing noise is the first ``torch.randn`` of the
update, so a generator seeded the same way gives the other library the same noise. d3rlpy
updates the actor at grad steps 0, 2, 4, ...

``--rebrac`` records d3rlpy's ``ReBRAC`` instead, at offrl's ReBRAC settings (hidden 256 x 3,
LayerNorm after every hidden activation of the critics, learning rates 1e-3, beta_actor =
beta_critic = 0.01, the same smoothing and actor delay); every batch then also carries the data's
next actions (uniform in ``[-1, 1]``, from their own generator, so the TD3+BC batches stay as
they were). ``tests/test_d3rlpy_same_rebrac.py`` replays it.

``--out`` gets, in plain tensors (``torch.load(weights_only=True)`` reads it): the initial and
final weights of the actor, the two critics and their targets, each network a list of
``(weight [out, in], bias [out])`` per layer as ``nn.Linear`` holds them; the batches; the
noise seeds; and each update's metrics. ``tests/test_d3rlpy_same_update.py`` replays the same
updates in offrl and compares.
"""

from __future__ import annotations

import argparse
from typing import Any

import d3rlpy
import torch
from d3rlpy.torch_utility import TorchMiniBatch

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256


def layers(module: torch.nn.Module) -> list[list[torch.Tensor]]:
    """``[[W, b], ...]`` of an encoder + head network (d3rlpy's policy or one Q-function): its
    ``nn.Linear`` layers in order (a LayerNorm's affine parameters are not listed)."""
    linear = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return [[m.weight.detach().clone(), m.bias.detach().clone()] for m in linear]


def networks(modules: Any) -> dict[str, Any]:
    return {
        "actor": layers(modules.policy),
        "critics": [layers(q) for q in modules.q_funcs],
        "actor_target": layers(modules.targ_policy),
        "critic_targets": [layers(q) for q in modules.targ_q_funcs],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--updates", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="d3rlpy's weight initialisation")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--noise-seed", type=int, default=100)
    p.add_argument("--rebrac", action="store_true", help="d3rlpy's ReBRAC instead of TD3PlusBC")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    torch.set_default_dtype(getattr(torch, args.dtype))
    torch.manual_seed(args.seed)
    if args.rebrac:
        algo = d3rlpy.algos.ReBRACConfig(  # offrl's ReBRAC defaults
            actor_learning_rate=1e-3,
            critic_learning_rate=1e-3,
            actor_encoder_factory=d3rlpy.models.VectorEncoderFactory([256, 256, 256]),
            critic_encoder_factory=d3rlpy.models.VectorEncoderFactory(
                [256, 256, 256], use_layer_norm=True
            ),
            batch_size=BATCH,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            actor_beta=0.01,
            critic_beta=0.01,
            update_actor_interval=2,
        ).create(device="cpu")
    else:
        algo = d3rlpy.algos.TD3PlusBCConfig(  # the paper's settings, as benchmarks/d3rlpy/train.py
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=BATCH,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            alpha=2.5,
            update_actor_interval=2,
        ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    for value in vars(impl._modules).values():  # every network in the chosen dtype
        if isinstance(value, torch.nn.Module):
            value.to(torch.get_default_dtype())
    modules = impl._modules
    initial = networks(modules)

    g = torch.Generator().manual_seed(args.data_seed)
    batches = []
    for _ in range(args.updates):
        batches.append(
            {
                "obs": torch.randn(BATCH, OBS_DIM, generator=g),
                "actions": torch.rand(BATCH, ACT_DIM, generator=g) * 2 - 1,
                "rewards": torch.randn(BATCH, generator=g),
                "next_obs": torch.randn(BATCH, OBS_DIM, generator=g),
                "dones": (torch.rand(BATCH, generator=g) < 0.1).to(torch.get_default_dtype()),
            }
        )
    if args.rebrac:  # the data's actions at next_obs (ReBRAC's critic penalty)
        g_next = torch.Generator().manual_seed(args.data_seed + 1)
        for b in batches:
            b["next_actions"] = torch.rand(BATCH, ACT_DIM, generator=g_next) * 2 - 1
    metrics = []
    for k, b in enumerate(batches):
        batch = TorchMiniBatch(
            observations=b["obs"],
            actions=b["actions"],
            rewards=b["rewards"][:, None],
            next_observations=b["next_obs"],
            next_actions=b.get("next_actions", torch.zeros(BATCH, ACT_DIM)),  # ReBRAC only
            returns_to_go=torch.zeros(BATCH, 1),  # unused by TD3PlusBC
            terminals=b["dones"][:, None],
            intervals=torch.ones(BATCH, 1),
            device="cpu",
        )
        torch.manual_seed(args.noise_seed + k)
        metrics.append(impl.inner_update(batch, k))
    torch.save(
        {
            "library": f"d3rlpy {d3rlpy.__version__}",
            "algo": "rebrac" if args.rebrac else "td3plusbc",
            "dtype": args.dtype,
            "initial": initial,
            "final": networks(modules),
            "batches": batches,
            "noise_seeds": [args.noise_seed + k for k in range(args.updates)],
            "metrics": metrics,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
