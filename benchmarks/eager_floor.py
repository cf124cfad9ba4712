"""How fast can an eager PyTorch TD3+BC update be? offrl's two TD3+BC paths, and d3rlpy's.

Run from the repository root with offrl's own interpreter::

    .venv/bin/python benchmarks/eager_floor.py                      # 6 rounds of 3 s, 2 threads
    .venv/bin/python benchmarks/eager_floor.py --hidden 8 8          # per-update overhead only
    .venv/bin/python benchmarks/eager_floor.py --d3rlpy              # and d3rlpy, same rounds

The foundation issue asks offrl's TD3+BC for 3x d3rlpy's updates per second. offrl's ``td3bc``
has two paths to the same update, and this script times them in the same process and the same
moments, so that machine drift cancels:

* **autograd** -- ``td3bc`` with ``fused=False``: the losses written as in the paper, gradients
  by autograd (each network one custom autograd node, see :mod:`offrl.nn.mlp`), one fused Adam
  per network;
* **fused** -- ``td3bc``'s default: the same update with every gradient derived by hand
  (:mod:`offrl.algos.td3bc_fused`: ``dL/dQ = 2 (Q - y) / B``, the chain rule through ``tanh``
  and the BC term), no autograd graph, the networks' batched kernels and the algorithm's own
  optimisers. With no framework cost left but module calls and metrics, it is within a few per
  cent of the fastest eager update (a bare hand-derived loop, buffers allocated once and no
  metrics, measured 1.03-1.07x faster; ``benchmarks/results/floor/``).

Both start from the same weights and draw the same batches and the same target-smoothing noise;
:func:`check_same_update` asserts that their parameters agree after a few updates, so the two
time the same arithmetic. With ``--d3rlpy`` (after ``bash benchmarks/d3rlpy/setup.sh``), d3rlpy
2.8.1's TD3PlusBC runs as a third variant in every round, in its own virtual environment as
``benchmarks/compare_speed.py`` runs it, and the report adds each path / d3rlpy::

    .venv/bin/python benchmarks/eager_floor.py --d3rlpy --rounds 6 --seconds 5

With ``--cxx``, a third offrl-side variant joins: **cxx**, the fused path's arithmetic written in
C++ on ATen (``benchmarks/td3bc_floor.cpp``, compiled on first use with
``torch.utils.cpp_extension``; needs a C++ compiler and ninja), with no Python between the
operations. It is checked against the fused path like the two Python paths, and measures how
much of an update Python's per-call cost still is.

Writes ``<out>/FLOOR.md`` and ``<out>/floor.json`` (default ``benchmarks/results/floor``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from machine import busy_cores, git_commit  # benchmarks/machine.py (this script's folder)

from offrl.algos import EnvSpec, get_algorithm
from offrl.algos.td3bc import TD3BC
from offrl.bench.speed import _cpu_name, matmul_gflops, synthetic_dataset, updates_per_second
from offrl.data.sampler import Batch, TensorSampler

OBS, ACT = 17, 6
VARIANTS = ("autograd", "fused")


def _build(hidden: Sequence[int], seed: int = 0) -> dict[str, TD3BC]:
    """offrl's TD3+BC on both paths, with the same weights and the same generator state."""
    cls = get_algorithm("td3bc")
    algos = {}
    for variant in VARIANTS:
        cfg = cls.config_class.from_dict({"hidden": list(hidden), "fused": variant == "fused"})
        algo = cls(EnvSpec((OBS,), ACT), cfg, seed)
        assert isinstance(algo, TD3BC)
        algos[variant] = algo
    return algos


def _flats(algo: TD3BC) -> list[torch.Tensor]:
    """The weights of ``algo``'s actor, critics and their targets."""
    nets = (algo.actor.net, algo.critic.net, algo.actor_target.net, algo.critic_target.net)
    return [net.flat.detach() for net in nets]


def _max_diff_after(
    updates: int, steps: Sequence[Callable[[Batch], Any]], flats: Callable[[], list[Any]]
) -> float:
    """Run every update in ``steps`` on the same ``updates`` batches; return the largest absolute
    difference between the two weight lists that ``flats`` gives afterwards."""
    sampler = TensorSampler(synthetic_dataset(n=2000, obs_dim=OBS, act_dim=ACT), 256, seed=1)
    for _ in range(updates):
        batch = sampler.sample()
        for step in steps:
            step(batch)
    a, b = flats()
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def check_same_update(
    updates: int = 6, hidden: Sequence[int] = (32, 32), fused_seed: int | None = None
) -> float:
    """Run the two paths side by side on the same batches; return the largest absolute
    difference between their weights (actor, critics, targets) afterwards.

    ``fused_seed`` gives the fused path another generator (other target-smoothing noise: a check
    that the comparison can fail)."""
    algos = _build(hidden)
    if fused_seed is not None:
        algos["fused"].generator.manual_seed(fused_seed)
    a, f = algos["autograd"], algos["fused"]
    return _max_diff_after(updates, [a.update, f.update], lambda: [_flats(a), _flats(f)])


class CxxFloor:
    """``benchmarks/td3bc_floor.cpp``'s update on copies of ``algo``'s weights, drawing its
    target-smoothing noise from a generator seeded as ``algo``'s (so it computes ``algo``'s
    updates; :func:`check_cxx_update`)."""

    def __init__(self, algo: TD3BC, seed: int = 0) -> None:
        from torch.utils.cpp_extension import load

        ext = load(name="td3bc_floor", sources=[str(Path(__file__).parent / "td3bc_floor.cpp")])
        cfg = algo.config
        assert (cfg.alpha, cfg.gamma, cfg.tau, cfg.policy_freq) == (2.5, 0.99, 0.005, 2)
        self.noise_std, self.noise_clip = cfg.policy_noise, cfg.noise_clip
        self.flats = [flat.clone() for flat in _flats(algo)]  # updated in place by C++
        actor, critic = algo.actor.net, algo.critic.net
        self.floor = ext.TD3BCFloor(
            *self.flats, list(actor.sizes), list(critic.sizes), critic.ensemble, OBS
        )
        self.generator = torch.Generator().manual_seed(seed)  # as Algorithm.__init__ seeds it

    def update(self, batch: Batch) -> None:
        noise = torch.randn(batch.actions.shape, generator=self.generator)
        noise.mul_(self.noise_std).clamp_(-self.noise_clip, self.noise_clip)
        self.floor.update(
            batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.dones, noise
        )


def check_cxx_update(updates: int = 6, hidden: Sequence[int] = (32, 32)) -> float:
    """The largest absolute weight difference between offrl's fused path and :class:`CxxFloor`
    after ``updates`` updates on the same batches."""
    algo = _build(hidden)["fused"]
    cxx = CxxFloor(algo)
    return _max_diff_after(updates, [algo.update, cxx.update], lambda: [_flats(algo), cxx.flats])


D3RLPY_PYTHON = Path("benchmarks/.venv-d3rlpy/bin/python")


def _d3rlpy_rate(seconds: float, threads: int) -> float:
    """d3rlpy 2.8.1's TD3PlusBC, updates/s over one ``seconds`` window (a subprocess in its own
    virtual environment; ``bash benchmarks/d3rlpy/setup.sh`` makes it)."""
    cmd = [
        str(D3RLPY_PYTHON), "benchmarks/d3rlpy/speed.py", "--algo", "td3plusbc", "--threads",
        str(threads), "--seconds", str(seconds), "--repeats", "1", "--quiet-wait", "0", "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["updates_per_s"])


def run(
    hidden: Sequence[int],
    rounds: int,
    seconds: float,
    threads: int,
    d3rlpy: bool = False,
    cxx: bool = False,
) -> dict[str, Any]:
    """Timed windows of each update in alternating order (A B [C], then [C] B A, ...): medians
    per variant and of the per-round ratios. With ``cxx``, :class:`CxxFloor` is a variant too;
    with ``d3rlpy``, d3rlpy's TD3PlusBC runs in every round (hidden 256x2 only: its networks
    are fixed)."""
    torch.set_num_threads(threads)
    algos = _build(hidden)
    data = synthetic_dataset(obs_dim=OBS, act_dim=ACT)
    steps: dict[str, Callable[[Batch], Any]] = {v: algos[v].update for v in VARIANTS}
    if cxx:
        steps["cxx"] = CxxFloor(algos["fused"]).update
    samplers = {v: TensorSampler(data, 256, seed=1) for v in steps}
    updates: dict[str, Callable[[], float]] = {
        v: partial(updates_per_second, step, samplers[v], seconds) for v, step in steps.items()
    }
    for _ in range(50):  # warm-up
        for v, step in steps.items():
            step(samplers[v].sample())
    if d3rlpy:
        updates["d3rlpy"] = lambda: _d3rlpy_rate(seconds, threads)
    order = list(updates)
    rates: dict[str, list[float]] = {v: [] for v in order}
    for r in range(rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            rates[v].append(updates[v]())
    ratios = [f / a for f, a in zip(rates["fused"], rates["autograd"], strict=True)]
    res: dict[str, Any] = {
        "hidden": list(hidden),
        "rates": rates,
        "median": {v: statistics.median(x) for v, x in rates.items()},
        "ms_per_update": {v: 1e3 / statistics.median(x) for v, x in rates.items()},
        "fused_over_autograd": statistics.median(ratios),
        "ratios": ratios,
    }
    if cxx:
        per_round = [c / f for c, f in zip(rates["cxx"], rates["fused"], strict=True)]
        res["cxx_over_fused"] = statistics.median(per_round)
        res["cxx_over_fused_per_round"] = per_round
    if d3rlpy:
        for v in steps:
            per_round = [a / d for a, d in zip(rates[v], rates["d3rlpy"], strict=True)]
            res[f"{v}_over_d3rlpy"] = statistics.median(per_round)
            res[f"{v}_over_d3rlpy_per_round"] = per_round
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3.0, help="length of one timed window")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--d3rlpy",
        action="store_true",
        help="time d3rlpy 2.8.1's TD3PlusBC in the same rounds (needs benchmarks/d3rlpy/setup.sh)",
    )
    p.add_argument(
        "--cxx",
        action="store_true",
        help="also time the update in C++ (benchmarks/td3bc_floor.cpp; needs a compiler, ninja)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/floor"), help="output folder"
    )
    args = p.parse_args(argv)
    if args.d3rlpy and (list(args.hidden) != [256, 256] or not D3RLPY_PYTHON.exists()):
        p.error(f"--d3rlpy needs --hidden 256 256 and {D3RLPY_PYTHON} (benchmarks/d3rlpy/setup.sh)")
    diff = check_same_update()
    if diff > 1e-6:
        print(f"the fused and autograd updates disagree (max |diff| {diff:.2e})", file=sys.stderr)
        return 1
    if args.cxx:  # compiles on first use: before the machine's load is read
        cxx_diff = check_cxx_update()
        if cxx_diff > 1e-6:
            print(f"C++ and fused updates disagree (max |diff| {cxx_diff:.2e})", file=sys.stderr)
            return 1
        diff = max(diff, cxx_diff)
    others = busy_cores()
    if others is not None and others >= 0.5:
        # Torch's worker threads wait on each other at every parallel op: with a core taken by
        # another process, a 2-thread update can stall many-fold (measured: 4 updates/s).
        print(f"warning: other processes keep {others:.1f} cores busy", file=sys.stderr)
    load = os.getloadavg()
    res = run(args.hidden, args.rounds, args.seconds, args.threads, args.d3rlpy, args.cxx)
    commit = git_commit() or "unknown"
    res.update(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        commit=commit,
        cpu=_cpu_name(),
        threads=args.threads,
        torch=torch.__version__,
        max_weight_diff=diff,
        matmul_gflops=matmul_gflops(),
        loadavg_before=load,
        others_busy_cores=others,
        loadavg_after=os.getloadavg(),
        command="python benchmarks/eager_floor.py " + " ".join(argv or sys.argv[1:]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floor.json").write_text(json.dumps(res, indent=2) + "\n")
    m, ms = res["median"], res["ms_per_update"]
    lines = [
        "# TD3+BC: offrl's autograd and hand-derived (fused) updates",
        "",
        f"{res['date']}, commit {commit}, {res['cpu']}, {args.threads} threads, torch "
        f"{res['torch']}, hidden {args.hidden}, batch 256, {args.rounds} alternating rounds of "
        f"{args.seconds:g} s; a 256^3 matmul ran at {res['matmul_gflops']:.1f} GFLOP/s; load "
        f"average {load[0]:.2f} before, {res['loadavg_after'][0]:.2f} after. The variants "
        f"agree to {diff:.1e} in every weight after 6 updates.",
        "",
        "| variant | updates/s (median) | ms/update | per round |",
        "|---|---:|---:|---|",
        *(
            f"| {v} | {m[v]:.1f} | {ms[v]:.2f} | {', '.join(f'{x:.1f}' for x in res['rates'][v])} |"
            for v in res["rates"]
        ),
        "",
        f"fused / autograd: **{res['fused_over_autograd']:.2f}x** (median of the per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in res['ratios'])}).",
        *(
            f"{a} / {b}: **{res[f'{a}_over_{b}']:.2f}x** (per round "
            f"{', '.join(f'{x:.2f}' for x in res[f'{a}_over_{b}_per_round'])})."
            for a, b in [("cxx", "fused")] + [(v, "d3rlpy") for v in (*VARIANTS, "cxx")]
            if f"{a}_over_{b}" in res
        ),
        "",
        f"Reproduce: `.venv/bin/{res['command']}`",
    ]
    (args.out / "FLOOR.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
