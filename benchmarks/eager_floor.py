"""How fast can an eager PyTorch TD3+BC update be? offrl's TD3+BC against a hand-derived one.

Run from the repository root with offrl's own interpreter::

    .venv/bin/python benchmarks/eager_floor.py                      # 6 rounds of 3 s, 2 threads
    .venv/bin/python benchmarks/eager_floor.py --hidden 8 8          # per-update overhead only
    .venv/bin/python benchmarks/eager_floor.py --d3rlpy              # and d3rlpy, same rounds

The issue asks offrl's TD3+BC for 3x d3rlpy's updates per second. This script measures how much
of that is reachable by *any* eager PyTorch code at all, in the same process and the same
moments as offrl, so that machine drift cancels:

* **offrl** -- ``td3bc`` from the registry: losses written as in the paper, gradients by
  autograd (each network one custom autograd node, see :mod:`offrl.nn.mlp`), one fused Adam per
  network;
* **manual** -- :class:`ManualTD3BC` below: the same update with every gradient derived by hand
  (``dL/dQ = 2 (Q - y) / B``, the chain rule through ``tanh`` and the BC term), no autograd graph,
  no modules, no optimiser object: offrl's own batched matmul kernels (``_forward`` /
  ``_backward`` of :mod:`offrl.nn.mlp`) and ``torch._fused_adam_`` called directly, input buffers
  allocated once. It is a measuring stick, not a second implementation to train with: it
  cannot be subclassed loss by loss, which is what offrl's algorithms are for.

Both start from the same weights and draw the same batches and the same target-smoothing noise;
:func:`check_same_update` asserts that their parameters agree after a few updates (the test suite
runs it), so the two time the same arithmetic. The ratio manual / offrl is the share of an
update that offrl's design (autograd, modules, optimiser objects, metrics) costs. With
``--d3rlpy`` (after ``bash benchmarks/d3rlpy/setup.sh``), d3rlpy 2.8.1's TD3PlusBC runs as a third
variant in every round, in its own virtual environment as ``benchmarks/compare_speed.py`` runs
it, and the report adds offrl / d3rlpy and manual / d3rlpy::

    .venv/bin/python benchmarks/eager_floor.py --d3rlpy --rounds 6 --seconds 5

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
from pathlib import Path
from typing import Any

import torch

from offrl.algos import EnvSpec, get_algorithm
from offrl.algos.td3bc import TD3BC
from offrl.bench.speed import _cpu_name, matmul_gflops, synthetic_dataset, updates_per_second
from offrl.data.sampler import Batch, TensorSampler
from offrl.nn.mlp import _backward, _forward, _layer_views

OBS, ACT = 17, 6


def _views(flat: torch.Tensor, sizes: Sequence[tuple[int, int]], e: int) -> list[tuple[Any, ...]]:
    # (W, b, W^T, b^T) per layer, as EnsembleMLP hands them to its kernels.
    return [(w, b, w.transpose(1, 2), b.transpose(1, 2)) for w, b in _layer_views(flat, sizes, e)]


class _Net:
    """One network's flat weights, gradient buffer, Adam moments and per-layer views."""

    def __init__(self, flat: torch.Tensor, sizes: Sequence[tuple[int, int]], e: int) -> None:
        self.flat = flat.detach().clone()
        self.layers = _views(self.flat, sizes, e)
        self.grad = torch.empty_like(self.flat)
        self.grad_layers = [(w, b) for w, b, _, _ in _views(self.grad, sizes, e)]
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.step = torch.zeros(())

    def adam(self, lr: float) -> None:
        self.step += 1
        torch._fused_adam_(
            [self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step],
            lr=lr, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
            maximize=False,
        )  # fmt: skip


class ManualTD3BC:
    """TD3+BC's update (Fujimoto & Gu, 2021) with hand-derived gradients, starting from
    ``algo``'s weights and drawing its noise like ``algo`` (see the module docstring)."""

    def __init__(self, algo: TD3BC, seed: int = 0) -> None:
        cfg = algo.config
        self.cfg = cfg
        a, c = algo.actor.net, algo.critic.net
        self.actor = _Net(a.flat, a.sizes, 1)
        self.critic = _Net(c.flat, c.sizes, c.ensemble)
        self.actor_t = _Net(algo.actor_target.net.flat, a.sizes, 1)
        self.critic_t = _Net(algo.critic_target.net.flat, c.sizes, c.ensemble)
        self.q1 = [tuple(t[:1] for t in layer) for layer in self.critic.layers]  # critic 0 only
        self.generator = torch.Generator().manual_seed(seed)  # as Algorithm.__init__ seeds it
        self.num_updates = 0
        b = cfg.batch_size
        self.x = torch.empty(b, OBS + ACT)  # critic inputs [s, a], written in place
        self.x_next = torch.empty(b, OBS + ACT)

    @torch.no_grad()
    def update(self, batch: Batch) -> None:
        cfg = self.cfg
        b = batch.obs.shape[0]
        # Target: y = r + gamma (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(eps), -1, 1)).
        noise = torch.randn(batch.actions.shape, generator=self.generator)
        noise.mul_(cfg.policy_noise).clamp_(-cfg.noise_clip, cfg.noise_clip)
        next_a, _ = _forward(batch.next_obs, self.actor_t.layers, 0.0, None)
        self.x_next[:, :OBS] = batch.next_obs
        self.x_next[:, OBS:] = next_a[0].tanh_().add_(noise).clamp_(-1.0, 1.0)
        next_q, _ = _forward(self.x_next, self.critic_t.layers, 0.0, None)
        y = batch.rewards + cfg.gamma * (1.0 - batch.dones) * next_q.amin(0).view(b)
        # Critic: L = sum_i mean_b (Q_i - y)^2, so dL/dQ_i = 2 (Q_i - y) / B.
        self.x[:, :OBS] = batch.obs
        self.x[:, OBS:] = batch.actions
        q, acts = _forward(self.x, self.critic.layers, 0.0, None)
        g = q.sub_(y.view(1, b, 1)).mul_(2.0 / b)
        _backward(g, acts, self.critic.layers, 0.0, self.critic.grad_layers, False)
        self.critic.adam(cfg.critic_lr)
        self.num_updates += 1
        if self.num_updates % cfg.policy_freq:
            return
        # Actor: L = -lambda mean_b Q1(s, pi) + mean (pi - a)^2, lambda = alpha / mean |Q1|.
        pre, a_acts = _forward(batch.obs, self.actor.layers, 0.0, None)
        pi = pre[0].tanh()
        self.x[:, OBS:] = pi
        q1, q_acts = _forward(self.x, self.q1, 0.0, None)
        lmbda = cfg.alpha / q1.abs().mean()
        g_q = torch.full_like(q1, -1.0 / b).mul_(lmbda)
        g_x = _backward(g_q, q_acts, self.q1, 0.0, (), True)  # dL/d[s, a]: [1, B, OBS + ACT]
        g_pi = (pi - batch.actions).mul_(2.0 / pi.numel()).add_(g_x[0, :, OBS:])
        g_pre = g_pi.mul_(1.0 - pi * pi).unsqueeze(0)  # through tanh
        _backward(g_pre, a_acts, self.actor.layers, 0.0, self.actor.grad_layers, False)
        self.actor.adam(cfg.actor_lr)
        self.actor_t.flat.lerp_(self.actor.flat, cfg.tau)
        self.critic_t.flat.lerp_(self.critic.flat, cfg.tau)


def _build(
    hidden: Sequence[int], seed: int = 0, manual_seed: int | None = None
) -> tuple[TD3BC, ManualTD3BC]:
    cls = get_algorithm("td3bc")
    algo = cls(EnvSpec((OBS,), ACT), cls.config_class.from_dict({"hidden": list(hidden)}), seed)
    assert isinstance(algo, TD3BC)
    return algo, ManualTD3BC(algo, seed if manual_seed is None else manual_seed)


def check_same_update(
    updates: int = 6, hidden: Sequence[int] = (32, 32), manual_seed: int | None = None
) -> float:
    """Run offrl's TD3+BC and :class:`ManualTD3BC` side by side on the same batches; return the
    largest absolute difference between their weights (actor, critics, targets) afterwards.

    ``manual_seed`` gives the manual update other target-smoothing noise (a check that the
    comparison can fail)."""
    algo, manual = _build(hidden, manual_seed=manual_seed)
    sampler = TensorSampler(synthetic_dataset(n=2000, obs_dim=OBS, act_dim=ACT), 256, seed=1)
    for _ in range(updates):
        batch = sampler.sample()
        algo.update(batch)
        manual.update(batch)
    pairs = [
        (algo.actor.net.flat, manual.actor.flat),
        (algo.critic.net.flat, manual.critic.flat),
        (algo.actor_target.net.flat, manual.actor_t.flat),
        (algo.critic_target.net.flat, manual.critic_t.flat),
    ]
    return max(float((a.detach() - m).abs().max()) for a, m in pairs)


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
    hidden: Sequence[int], rounds: int, seconds: float, threads: int, d3rlpy: bool = False
) -> dict[str, Any]:
    """Timed windows of each update in alternating order (A B [C], then [C] B A, ...): medians
    per variant and of the per-round ratios. With ``d3rlpy``, d3rlpy's TD3PlusBC runs as the
    third variant of every round (hidden 256x2 only: its networks are fixed)."""
    torch.set_num_threads(threads)
    algo, manual = _build(hidden)
    data = synthetic_dataset(obs_dim=OBS, act_dim=ACT)
    samplers = {v: TensorSampler(data, 256, seed=1) for v in ("offrl", "manual")}
    updates: dict[str, Callable[[], float]] = {
        "offrl": lambda: updates_per_second(algo.update, samplers["offrl"], seconds),
        "manual": lambda: updates_per_second(manual.update, samplers["manual"], seconds),
    }
    for _ in range(50):  # warm-up
        algo.update(samplers["offrl"].sample())
        manual.update(samplers["manual"].sample())
    if d3rlpy:
        updates["d3rlpy"] = lambda: _d3rlpy_rate(seconds, threads)
    order = list(updates)
    rates: dict[str, list[float]] = {v: [] for v in order}
    for r in range(rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            rates[v].append(updates[v]())
    ratios = [m / o for m, o in zip(rates["manual"], rates["offrl"], strict=True)]
    res: dict[str, Any] = {
        "hidden": list(hidden),
        "rates": rates,
        "median": {v: statistics.median(x) for v, x in rates.items()},
        "ms_per_update": {v: 1e3 / statistics.median(x) for v, x in rates.items()},
        "manual_over_offrl": statistics.median(ratios),
        "ratios": ratios,
    }
    if d3rlpy:
        for v in ("offrl", "manual"):
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
        "--out", type=Path, default=Path("benchmarks/results/floor"), help="output folder"
    )
    args = p.parse_args(argv)
    if args.d3rlpy and (list(args.hidden) != [256, 256] or not D3RLPY_PYTHON.exists()):
        p.error(f"--d3rlpy needs --hidden 256 256 and {D3RLPY_PYTHON} (benchmarks/d3rlpy/setup.sh)")
    diff = check_same_update()
    if diff > 1e-6:
        print(f"manual and offrl updates disagree (max |diff| {diff:.2e})", file=sys.stderr)
        return 1
    load = os.getloadavg()
    res = run(args.hidden, args.rounds, args.seconds, args.threads, args.d3rlpy)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    res.update(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        commit=commit,
        cpu=_cpu_name(),
        threads=args.threads,
        torch=torch.__version__,
        max_weight_diff=diff,
        matmul_gflops=matmul_gflops(),
        loadavg_before=load,
        loadavg_after=os.getloadavg(),
        command="python benchmarks/eager_floor.py " + " ".join(argv or sys.argv[1:]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floor.json").write_text(json.dumps(res, indent=2) + "\n")
    m, ms = res["median"], res["ms_per_update"]
    lines = [
        "# TD3+BC: offrl against a hand-derived eager update",
        "",
        f"{res['date']}, commit {commit}, {res['cpu']}, {args.threads} threads, torch "
        f"{res['torch']}, hidden {args.hidden}, batch 256, {args.rounds} alternating rounds of "
        f"{args.seconds:g} s; a 256^3 matmul ran at {res['matmul_gflops']:.1f} GFLOP/s; load "
        f"average {load[0]:.2f} before, {res['loadavg_after'][0]:.2f} after. The two updates "
        f"agree to {diff:.1e} in every weight after 6 updates.",
        "",
        "| variant | updates/s (median) | ms/update | per round |",
        "|---|---:|---:|---|",
        *(
            f"| {v} | {m[v]:.1f} | {ms[v]:.2f} | {', '.join(f'{x:.1f}' for x in res['rates'][v])} |"
            for v in res["rates"]
        ),
        "",
        f"manual / offrl: **{res['manual_over_offrl']:.2f}x** (median of the per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in res['ratios'])}).",
        *(
            f"{v} / d3rlpy: **{res[f'{v}_over_d3rlpy']:.2f}x** (per round "
            f"{', '.join(f'{x:.2f}' for x in res[f'{v}_over_d3rlpy_per_round'])})."
            for v in ("offrl", "manual")
            if f"{v}_over_d3rlpy" in res
        ),
        "",
        f"Reproduce: `.venv/bin/{res['command']}`",
    ]
    (args.out / "FLOOR.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
