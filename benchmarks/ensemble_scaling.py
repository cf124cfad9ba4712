"""SAC-N update speed against the number of critics N: offrl's batched ensemble vs a Python loop.

Run from the repository root with offrl's own interpreter::

    .venv/bin/python benchmarks/ensemble_scaling.py                   # N = 2 5 10 20 50, 2 threads
    .venv/bin/python benchmarks/ensemble_scaling.py --n 2 10 --seconds 5 --threads 1

For every N it times, in rounds that visit every N and variant (A B ... B A, ``--rounds`` of
them, medians kept), two SAC-N updates on the same synthetic data (observation 17, action 6, 100k
transitions: ``offrl bench speed``'s standard size), the same hidden layers (``--hidden``,
default two of 256) and batch (256):

* **offrl** -- ``sac_n`` from the registry: the N critics are one :class:`~offrl.nn.EnsembleMLP`
  (one flat parameter, one batched matmul per layer, hand-written backward, one fused Adam), and
  the actor's ``min_i Q_i`` back-propagates only through each row's minimising critic
  (:meth:`~offrl.nn.EnsembleMLP.min`: the same gradient, less work, so its FLOPs per
  update depend on how the critics disagree; counted after 50 warm-up updates);
* **loop** -- :class:`LoopSACN` below, the straightforward implementation: N separate
  ``nn.Sequential`` critics evaluated in a Python loop, ``torch.optim.Adam``, a per-tensor Polyak
  update. Same actor (offrl's ``TanhGaussianPolicy``), same losses and update order;
* **amin** (only with ``--amin``) -- offrl with the actor's minimum taken by ``amin`` over all
  critics' outputs, as before ``EnsembleMLP.min``: the in-process A/B of that one change.

One timed update includes drawing its batch, as in training. For each it reports updates/s, the
cost relative to its own N = 2 (``ups(2) / ups(N)``), FLOPs per update (counted by
``torch.utils.flop_counter``) and the fraction of the matmul bound (``ups * FLOPs / matmul rate``,
the rate of a 256^3 fp32 matmul measured at the same thread count: see
:mod:`offrl.bench.speed`). The issue's targets: cost(N = 10) <= 3 and cost(N = 50) <= 12 for
offrl.

Writes ``<out>/ENSEMBLE.md`` and ``<out>/ensemble.json`` (default
``benchmarks/results/ensemble``). Timings mean little while other processes load the machine:
the script records the load average before and after.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from offrl.algos import EnvSpec, get_algorithm
from offrl.bench.speed import (
    FlopCounter,
    _cpu_name,
    matmul_gflops,
    synthetic_dataset,
    updates_per_second,
)
from offrl.data.sampler import Batch, TensorSampler
from offrl.nn import TanhGaussianPolicy

OBS_DIM, ACT_DIM = 17, 6
ROOT = Path(__file__).resolve().parent.parent


class LoopSACN:
    """Reference SAC-N with N separate critics in a Python loop (what the batched ensemble
    replaces). Same losses and update order as :class:`offrl.algos.SAC`: actor, temperature,
    critics, Polyak."""

    def __init__(
        self, n: int, hidden: Sequence[int], seed: int = 0, lr: float = 3e-4, tau: float = 0.005
    ) -> None:
        torch.manual_seed(seed)
        self.gamma, self.tau, self.target_entropy = 0.99, tau, -float(ACT_DIM)
        self.actor = TanhGaussianPolicy(OBS_DIM, ACT_DIM, hidden)
        self.critics = nn.ModuleList(_mlp(OBS_DIM + ACT_DIM, hidden) for _ in range(n))
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optim = torch.optim.Adam(self.critics.parameters(), lr=lr)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=lr)

    def q(self, critics: nn.ModuleList, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=1)
        return torch.stack([c(x)[:, 0] for c in critics])  # [N, B], one critic at a time

    def update(self, batch: Batch) -> None:
        alpha = self.log_alpha.detach().exp()
        actions, log_prob = self.actor.sample(batch.obs)
        actor_loss = (alpha * log_prob - self.q(self.critics, batch.obs, actions).amin(0)).mean()
        _step(self.actor_optim, actor_loss)
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        _step(self.alpha_optim, alpha_loss)
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(batch.next_obs)
            q_next = self.q(self.targets, batch.next_obs, next_a).amin(0) - alpha * next_logp
            y = batch.rewards + self.gamma * (1.0 - batch.dones) * q_next
        q = self.q(self.critics, batch.obs, batch.actions)
        _step(self.critic_optim, F.mse_loss(q, y.expand_as(q), reduction="sum") / q.shape[1])
        with torch.no_grad():
            for t, s in zip(self.targets.parameters(), self.critics.parameters(), strict=True):
                t.lerp_(s, self.tau)


def _mlp(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-1], 1))


def _step(optim: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()


def _amin_actor_q(self: Any, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    # The actor's value before EnsembleMLP.min: the backward pass runs through every
    # critic, the minimisers and the N - 1 zero gradients alike.
    return self.critic(obs, actions, detach_params=True).amin(0)


def _make(variant: str, n: int, hidden: Sequence[int], batch: int) -> Callable[[Batch], Any]:
    if variant == "loop":
        return LoopSACN(n, hidden).update
    cls = get_algorithm("sac_n")
    cfg = cls.config_class.from_dict(
        {"num_critics": n, "hidden": tuple(hidden), "batch_size": batch}
    )
    algo = cls(EnvSpec((OBS_DIM,), ACT_DIM), cfg, seed=0)
    if variant == "amin":
        setattr(algo, "actor_q", types.MethodType(_amin_actor_q, algo))  # noqa: B010
    return algo.update


def _flops(update: Callable[[Batch], Any], sampler: TensorSampler) -> float:
    with FlopCounter() as counter:
        update(sampler.sample())
    return float(counter.total)


def run(
    ns: Sequence[int],
    threads: int,
    seconds: float,
    rounds: int,
    hidden: Sequence[int],
    batch: int,
    amin: bool = False,
    warmup: int = 50,
) -> dict[str, Any]:
    """All figures as a JSON-ready dict."""
    torch.set_num_threads(threads)
    data = synthetic_dataset(obs_dim=OBS_DIM, act_dim=ACT_DIM)
    load_before = os.getloadavg()
    gflops = matmul_gflops()
    variants = ("offrl", "loop", "amin") if amin else ("offrl", "loop")
    updates = {(n, v): _make(v, n, hidden, batch) for n in ns for v in variants}
    samplers = {key: TensorSampler(data, batch, seed=1) for key in updates}
    flops = {}
    for key, update in updates.items():
        # 50 updates, not a handful: offrl's actor step back-propagates only through each row's
        # minimising critic (EnsembleMLP.min), which is cheap once the critics disagree
        # about which of them is lowest -- after ~20-50 updates, as in any real training run.
        for _ in range(warmup):
            update(samplers[key].sample())
        flops[key] = _flops(update, samplers[key])
    # Every round times every (N, variant) once, in reverse order on odd rounds (A B ... B A):
    # the machine's speed drifts by tens of percent within minutes, and a cost is a ratio of
    # two N's rates, so each N must be timed next to the others, not in its own stretch of time.
    rates: dict[tuple[int, str], list[float]] = {key: [] for key in updates}
    cases = list(updates)
    for r in range(rounds):
        for key in cases if r % 2 == 0 else cases[::-1]:
            # chunk=1: at N = 200 one update takes most of a second.
            rates[key].append(updates_per_second(updates[key], samplers[key], seconds, chunk=1))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    base = ns[0]
    rows = []
    for n in ns:
        row: dict[str, Any] = {"n": n}
        for v in variants:
            ups = statistics.median(rates[n, v])
            row[f"{v}_flops"] = flops[n, v]
            row[f"{v}_updates_per_s"] = ups
            row[f"{v}_repeats"] = rates[n, v]
            row[f"{v}_bound_fraction"] = ups * flops[n, v] / (gflops * 1e9)
            # The median of the per-round ratios: both rates of a ratio were timed in one round.
            row[f"{v}_cost_vs_n{base}"] = statistics.median(
                b / x for b, x in zip(rates[base, v], rates[n, v], strict=True)
            )
        if amin:
            row["offrl_over_amin"] = statistics.median(
                o / a for o, a in zip(rates[n, "offrl"], rates[n, "amin"], strict=True)
            )
        rows.append(row)
        print(
            f"N={n:3d}  offrl {row['offrl_updates_per_s']:7.1f}/s  "
            f"loop {row['loop_updates_per_s']:7.1f}/s",
            file=sys.stderr,
            flush=True,
        )
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "seconds_per_window": seconds,
        "rounds": rounds,
        "hidden": list(hidden),
        "batch_size": batch,
        "obs_dim": OBS_DIM,
        "act_dim": ACT_DIM,
        "matmul_gflops": gflops,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "torch_version": torch.__version__,
        "cpu": _cpu_name(),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The results table."""
    base = result["rows"][0]["n"]
    lines = [
        "# SAC-N update speed against the number of critics",
        "",
        f"Generated by `benchmarks/ensemble_scaling.py` on {result['date']}: {result['cpu']}, "
        f"PyTorch {result['torch_version']}, {result['threads']} thread(s), hidden "
        f"{result['hidden']}, batch {result['batch_size']}, obs {result['obs_dim']}, act "
        f"{result['act_dim']}; medians of {result['rounds']} rounds of "
        f"{result['seconds_per_window']} s windows, each round timing every N and variant "
        "(reversed order on odd rounds). Matmul bound: "
        f"{result['matmul_gflops']:.0f} GFLOP/s. Load average before / after: "
        f"{result['load_average_before'][0]:.2f} / {result['load_average_after'][0]:.2f}.",
        "",
        "*offrl*: the N critics as one batched ensemble (`sac_n`). *loop*: N separate "
        "`nn.Sequential` critics in a Python loop (`LoopSACN` in the script). Cost = "
        f"updates/s at N = {base} divided by updates/s at N within one round, median over "
        "rounds (target for offrl: <= 3 at N = 10, "
        "<= 12 at N = 50).",
        "",
        "| N | offrl updates/s | offrl cost | loop updates/s | loop cost | offrl / loop "
        "| MFLOP/update | offrl bound fraction | loop bound fraction |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']} | {r['offrl_updates_per_s']:.1f} | {r[f'offrl_cost_vs_n{base}']:.2f} "
            f"| {r['loop_updates_per_s']:.1f} | {r[f'loop_cost_vs_n{base}']:.2f} "
            f"| {r['offrl_updates_per_s'] / r['loop_updates_per_s']:.2f} "
            f"| {r['offrl_flops'] / 1e6:.0f} | {r['offrl_bound_fraction']:.1%} "
            f"| {r['loop_bound_fraction']:.1%} |"
        )
    if "amin_updates_per_s" in result["rows"][0]:
        lines += [
            "",
            "*amin* (`--amin`): offrl's `sac_n` with the actor's `min_i Q_i` taken by `amin` over "
            "the ensemble's output, so that its backward pass runs through every critic, instead "
            "of `EnsembleCritic.min_q` (through each row's minimiser only). Speed-up = the median "
            "of per-round ratios offrl / amin.",
            "",
            "| N | amin updates/s | amin cost | offrl speed-up over amin |",
            "|---:|---:|---:|---:|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['n']} | {r['amin_updates_per_s']:.1f} | {r[f'amin_cost_vs_n{base}']:.2f} "
                f"| {r['offrl_over_amin']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed window")
    parser.add_argument("--rounds", type=int, default=4, help="timed windows per variant and N")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--amin",
        action="store_true",
        help="also time offrl with the actor's min taken by amin (backward through every critic)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ensemble"))
    args = parser.parse_args(argv)
    result = run(
        args.n, args.threads, args.seconds, args.rounds, args.hidden, args.batch_size, args.amin
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ENSEMBLE.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
