"""How much CUDA graphs would speed up TD3+BC's update on a GPU (a probe, not a feature).

At the standard size a GPU update is bound by kernel launches and host syncs (TD3+BC: ~400
updates/s on an H100, 7 % of the matmul bound; ``benchmarks/results/gpu/``). This captures
offrl's own TD3+BC update -- batch sampling included -- into two CUDA graphs, one per phase of
the ``policy_freq = 2`` cycle (critic only; critic, actor and targets), and times replaying them
against the eager update, with and without reading the metrics back every update as training
does. Both paths start from the same weights and draw from their own generators, which the
graphs register, so the graph path's random numbers differ from the eager path's.

    python benchmarks/cuda_graph_probe.py [--updates 3000]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from offrl.algos.base import EnvSpec
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.bench.speed import synthetic_dataset
from offrl.data.sampler import TensorSampler


def rate(step: object, n: int) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(n):
        step(i)  # type: ignore[operator]
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--updates", type=int, default=3000)
    args = p.parse_args()
    data = synthetic_dataset()

    def make() -> tuple[TD3BC, TensorSampler]:
        algo = TD3BC(EnvSpec((17,), 6), TD3BCConfig(), seed=0, device="cuda")
        sampler = TensorSampler(data, 256, seed=0, device="cuda")
        for _ in range(20):  # optimiser state, cuBLAS workspaces
            algo.update(sampler.sample())
        return algo, sampler

    algo, sampler = make()
    graph_algo, graph_sampler = make()

    out: dict[str, float] = {}
    out["eager, metrics read every update"] = rate(
        lambda i: algo.update(sampler.sample()), args.updates
    )

    def eager_no_read(i: int) -> None:
        algo.train_step(sampler.sample())
        algo.num_updates += 1

    out["eager, metrics not read"] = rate(eager_no_read, args.updates)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(10):
            graph_algo.update(graph_sampler.sample())
    torch.cuda.current_stream().wait_stream(side)
    graphs, infos = [], []
    for phase in range(2):  # num_updates even: critic only; odd: critic + actor + targets
        g = torch.cuda.CUDAGraph()
        g.register_generator_state(graph_algo.generator)
        g.register_generator_state(graph_sampler.generator)
        graph_algo.num_updates = phase
        with torch.cuda.graph(g):
            infos.append(graph_algo.train_step(graph_sampler.sample()))
        graphs.append(g)

    def replay_read(i: int) -> None:
        graphs[i % 2].replay()
        {k: float(v) for k, v in infos[i % 2].items()}

    def replay(i: int) -> None:
        graphs[i % 2].replay()

    out["graphs, metrics read every update"] = rate(replay_read, args.updates)
    out["graphs, metrics not read"] = rate(replay, args.updates)
    finite = all(
        torch.isfinite(t).all().item()
        for t in list(graph_algo.actor.parameters()) + list(graph_algo.critic.parameters())
    )
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "updates": args.updates,
                "updates_per_s": out,
                "graph_weights_finite": finite,
                "last_metrics_graph": {k: float(v) for k, v in infos[1].items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
