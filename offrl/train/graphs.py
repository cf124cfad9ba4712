"""An algorithm's updates replayed from CUDA graphs.

At the standard size (two layers of 256, batch 256) a GPU update is bound by kernel launches,
not arithmetic: TD3+BC's ran at 400-550 updates/s on an H100, 7 % of the GPU's matmul bound,
and 1,910-2,070 replayed from this module's graphs (``offrl bench speed --device cuda
--cuda-graphs``; BC 924 -> 4,069; ``benchmarks/results/gpu/``). A graph records one update's
kernels once; replaying it is one launch.

:class:`GraphedUpdate` runs the first updates eagerly on a side stream (they allocate the
optimiser state and the libraries' workspaces, as capture requires), then captures one graph per
phase of the algorithm's update cycle (:meth:`Algorithm.graph_cycle`: TD3+BC's actor updates
every ``policy_freq`` steps, so ``policy_freq`` graphs) and from then on copies each batch into
the graphs' input and replays. The algorithm's generator is registered with every graph, so its
draws advance on each replay as they would eagerly. Batches are drawn outside the graphs, by the
caller, exactly as without them.

Capture happens at the first update after the eager ones, so a resumed run captures after its
checkpoint is loaded (loading replaces optimiser-state tensors that a graph would point to).
"""

from __future__ import annotations

import torch

from offrl.algos.base import Algorithm
from offrl.data.sampler import Batch

__all__ = ["GraphedUpdate"]


class GraphedUpdate:
    """``update(batch)`` with the same results as ``algo.update(batch)``, replayed from CUDA
    graphs after ``eager`` warm-up updates.

    Raises ``ValueError`` if ``algo`` is not on a CUDA device or cannot be captured
    (:meth:`Algorithm.graph_cycle` returns ``None``).
    """

    def __init__(self, algo: Algorithm, eager: int = 10) -> None:
        cycle = algo.graph_cycle()
        if cycle is None:
            raise ValueError(f"{algo.name}'s update cannot be replayed from CUDA graphs")
        if algo.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {algo.device}")
        if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
            raise RuntimeError(f"torch {torch.__version__} cannot register generators with graphs")
        self.algo = algo
        self.cycle = cycle
        # Whole cycles, so that every phase has run eagerly before it is captured.
        self.eager_left = max(eager, 1) * cycle
        self.stream = torch.cuda.Stream(algo.device)
        self.graphs: list[torch.cuda.CUDAGraph] = []
        self.outputs: list[dict[str, torch.Tensor | float]] = []
        self.static: Batch | None = None

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; returns its metrics as ``Algorithm.update`` does."""
        algo = self.algo
        if self.eager_left:
            self.eager_left -= 1
            self.stream.wait_stream(torch.cuda.current_stream(algo.device))
            with torch.cuda.stream(self.stream):
                metrics = algo.update(batch)
            torch.cuda.current_stream(algo.device).wait_stream(self.stream)
            return metrics
        if not self.graphs:
            self._capture(batch)
        assert self.static is not None
        for dst, src in zip(self.static, batch, strict=True):
            if dst is not None and src is not None:
                dst.copy_(src, non_blocking=True)
        phase = algo.num_updates % self.cycle
        self.graphs[phase].replay()
        algo.num_updates += 1
        return {k: float(v) for k, v in self.outputs[phase].items() if not k.startswith("_")}

    def _capture(self, batch: Batch) -> None:
        algo = self.algo
        obs, actions, rewards, next_obs, dones = (t.clone() for t in batch[:5])
        rows, next_actions = (None if t is None else t.clone() for t in batch[5:7])
        self.static = Batch(obs, actions, rewards, next_obs, dones, rows, next_actions)
        step = algo.num_updates
        torch.cuda.synchronize(algo.device)
        try:
            for phase in range(self.cycle):
                graph = torch.cuda.CUDAGraph()
                graph.register_generator_state(algo.generator)
                algo.num_updates = phase  # train_step branches on num_updates % cycle
                with torch.cuda.graph(graph):
                    self.outputs.append(algo.train_step(self.static))
                self.graphs.append(graph)
        finally:
            algo.num_updates = step
