"""Shared by the scripts that run d3rlpy 2.8.1's own updates for offrl's step-by-step
comparisons of SAC, CQL, IQL and BC (``same_update_sac.py``, ``same_update_cql.py``,
``same_update_iql.py``, ``same_update_bc.py``; run in d3rlpy's virtual environment).

Each script builds d3rlpy's algorithm from ``torch.manual_seed(--seed)``, draws ``--updates``
seeded batches (the recipe of ``same_update.py``), seeds torch's global generator with
``noise_seed + k`` before update ``k``, runs d3rlpy's update, and saves in plain tensors
(``torch.load(weights_only=True)`` reads them): the initial and final weights of every network,
the batches, the seeds, what offrl needs of the random draws, and each update's metrics. It
does so in float32 and again in float64 (``--dtypes``): the same batches, networks and losses
with rounding ~1e-16 instead of ~1e-7, where a real difference cannot hide behind rounding. A
network is a list of ``[W [out, in], b [out]]`` per layer, as ``nn.Linear`` holds them (offrl's
``tests/_d3rlpy.py`` loads them into :class:`offrl.nn.mlp.EnsembleMLP`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import d3rlpy
import torch
from d3rlpy.models.torch import get_parameter
from d3rlpy.torch_utility import TorchMiniBatch
from torch import nn

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256

Layers = list[list[torch.Tensor]]


def linear(layer: nn.Linear) -> list[torch.Tensor]:
    """``[W [out, in], b [out]]`` of one layer, copied."""
    return [layer.weight.detach().clone(), layer.bias.detach().clone()]


def encoder(module: Any) -> Layers:
    """The two hidden layers of d3rlpy's default ``VectorEncoder`` (Linear, ReLU, Linear, ReLU)."""
    return [linear(module._encoder._layers[0]), linear(module._encoder._layers[2])]


def mlp(module: Any) -> Layers:
    """An encoder + ``_fc`` network: a Q-function, a value function, a deterministic policy."""
    return [*encoder(module), linear(module._fc)]


def normal_policy(policy: Any) -> Layers:
    """d3rlpy's ``NormalPolicy`` as one network whose output layer is ``[mu; log_std]`` (offrl's
    layout: the torso's output split in halves), or ``mu`` alone when the log-std is a free
    parameter (``use_std_parameter``: see :func:`parameter` for it)."""
    mu = linear(policy._mu)
    if isinstance(policy._logstd, nn.Linear):
        log_std = linear(policy._logstd)
        mu = [torch.cat([mu[0], log_std[0]]), torch.cat([mu[1], log_std[1]])]
    return [*encoder(policy), mu]


def parameter(module: Any) -> torch.Tensor:
    """The value of a d3rlpy ``Parameter`` module (a log-temperature, a log-alpha), copied."""
    return get_parameter(module).detach().clone()


def seeded_batches(updates: int, seed: int, size: int = BATCH) -> list[dict[str, torch.Tensor]]:
    """``updates`` batches of ``size`` rows: standard-normal observations, uniform actions in
    ``[-1, 1]``, standard-normal rewards and 10% terminals (``same_update.py``'s recipe), drawn
    in float32 and converted to torch's default dtype."""
    g = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    batches = [
        {
            "obs": torch.randn(size, OBS_DIM, generator=g, dtype=torch.float32),
            "actions": torch.rand(size, ACT_DIM, generator=g, dtype=torch.float32) * 2 - 1,
            "rewards": torch.randn(size, generator=g, dtype=torch.float32),
            "next_obs": torch.randn(size, OBS_DIM, generator=g, dtype=torch.float32),
            "dones": (torch.rand(size, generator=g, dtype=torch.float32) < 0.1).float(),
        }
        for _ in range(updates)
    ]
    return [{k: v.to(dtype) for k, v in b.items()} for b in batches]


def minibatch(b: dict[str, torch.Tensor]) -> TorchMiniBatch:
    """One of :func:`seeded_batches` as d3rlpy's mini-batch (column rewards and terminals)."""
    n = b["obs"].shape[0]
    return TorchMiniBatch(
        observations=b["obs"],
        actions=b["actions"],
        rewards=b["rewards"][:, None],
        next_observations=b["next_obs"],
        next_actions=torch.zeros(n, ACT_DIM),  # unused by these algorithms
        # Cal-QL's floor where the batch has one; unused by the other algorithms.
        returns_to_go=b["returns_to_go"][:, None] if "returns_to_go" in b else torch.zeros(n, 1),
        terminals=b["dones"][:, None],
        intervals=torch.ones(n, 1),  # gamma ** intervals: gamma
        device="cpu",
    )


def parser(doc: str, batch_size: int = BATCH) -> argparse.ArgumentParser:
    """The options every script takes (``batch_size``: the default of ``--batch-size``)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", required=True, help="where to save the runs (a torch file)")
    p.add_argument("--updates", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=batch_size, help="rows per batch")
    p.add_argument("--seed", type=int, default=0, help="d3rlpy's weight initialisation")
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--noise-seed", type=int, default=100)
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=("float32", "float64"),
        default=["float32", "float64"],
        help="run everything in each (float64: rounding far below what any real difference "
        "or Adam's eps shows)",
    )
    return p


def to_dtype(impl: Any) -> None:
    """Every network and parameter of d3rlpy's ``impl`` in torch's default dtype (d3rlpy makes
    its log-temperature and log-alpha ``float32`` explicitly), before any optimiser step."""
    for value in vars(impl._modules).values():
        if isinstance(value, nn.Module):
            value.to(torch.get_default_dtype())


def run_all(
    args: argparse.Namespace,
    runs: Callable[[list[dict[str, torch.Tensor]]], dict[str, Any]],
    make_batches: Callable[[int, int, int], list[dict[str, torch.Tensor]]] = seeded_batches,
    **extra: Any,
) -> None:
    """For each of ``--dtypes``, as torch's default dtype: the batches (``make_batches(updates,
    seed, size)``) and ``runs(batches)`` (``{variant: run}``); saved to ``--out`` as ``{dtype:
    {"batches", "runs"}}`` with the library's version, the updates' noise seeds and ``extra``."""
    torch.set_num_threads(1)
    by_dtype = {}
    for name in args.dtypes:
        torch.set_default_dtype(getattr(torch, name))
        batches = make_batches(args.updates, args.data_seed, args.batch_size)
        by_dtype[name] = {"batches": batches, "runs": runs(batches)}
    torch.set_default_dtype(torch.float32)
    torch.save(
        {
            "library": f"d3rlpy {d3rlpy.__version__}",
            "noise_seeds": [args.noise_seed + k for k in range(args.updates)],
            **by_dtype,
            **extra,
        },
        args.out,
    )
