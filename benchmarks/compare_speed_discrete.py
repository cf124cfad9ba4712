"""Side-by-side training speed of discrete CQL (QR-DQN + CQL, 200 quantiles, batch 32) in
offrl, Tianshou 2.0.1 and d3rlpy 2.8.1, at the Nature DQN's size (4 x 84 x 84 frames, 6
actions) and at MinAtar's (4 x 10 x 10, 3 actions): gradient updates per second, sampling
included, each library in its own virtual environment, one thread.

    .venv/bin/python benchmarks/compare_speed_discrete.py [--rounds 3] [--seconds 12]

Each round runs the three libraries in a rotated order (the host drifts, so the ratios are
taken within rounds); the median over rounds is reported, with offrl's fraction of the
matmul bound from ``offrl bench speed``. Writes ``benchmarks/results/speed-discrete.json`` and
``benchmarks/results/speed-discrete.md``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"nature": ("4,84,84", 6), "minatar": ("4,10,10", 3)}


def _commands(shape: str, actions: int, seconds: float) -> dict[str, list[str]]:
    common = ["--obs-shape", shape, "--num-actions", str(actions), "--seconds", str(seconds)]
    return {
        "offrl": [str(ROOT / ".venv/bin/offrl"), "bench", "speed", "--algo", "discrete_cql",
                  "--threads", "1", "--json", *common],
        "tianshou": [str(ROOT / "benchmarks/.venv-tianshou/bin/python"),
                     str(ROOT / "benchmarks/tianshou/speed_discrete.py"), "--json", *common],
        "d3rlpy": [str(ROOT / "benchmarks/.venv-d3rlpy/bin/python"),
                   str(ROOT / "benchmarks/d3rlpy/speed_discrete.py"), "--json", *common],
    }  # fmt: skip


def _run(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{done.stderr[-2000:]}")
    lines = done.stdout.splitlines()
    for start in range(len(lines) - 1, -1, -1):  # the last JSON object (one line or indented)
        if lines[start].startswith("{"):
            try:
                out: dict[str, Any] = json.loads("\n".join(lines[start:]))
                return out
            except json.JSONDecodeError:
                continue
    raise RuntimeError(f"{cmd[0]} printed no JSON object:\n{done.stdout[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--sizes", default="nature,minatar")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "sizes": {}}
    for size in args.sizes.split(","):
        shape, actions = SIZES[size]
        cmds = _commands(shape, actions, args.seconds)
        names = list(cmds)
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = names[r % 3 :] + names[: r % 3]
            rounds.append({name: _run(cmds[name]) for name in order})
            print(size, {k: round(v["updates_per_s"], 1) for k, v in rounds[-1].items()})
        ups = {n: statistics.median(r[n]["updates_per_s"] for r in rounds) for n in names}
        ratios = {
            n: statistics.median(
                r["offrl"]["updates_per_s"] / r[n]["updates_per_s"] for r in rounds
            )
            for n in ("tianshou", "d3rlpy")
        }
        bound = statistics.median(r["offrl"]["bound_fraction"] for r in rounds)
        results["sizes"][size] = {
            "obs_shape": shape, "num_actions": actions, "updates_per_s": ups,
            "offrl_over": ratios, "offrl_bound_fraction": bound, "rounds": rounds,
        }  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    (out / "speed-discrete.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Discrete CQL: offrl, Tianshou and d3rlpy side by side",
        "",
        "QR-DQN + CQL (200 quantiles, batch 32, one thread, sampling included); median of "
        f"{args.rounds} rounds of {args.seconds:g} s per library, the order rotated each round. "
        "Written by `benchmarks/compare_speed_discrete.py`.",
        "",
        "| size | offrl | Tianshou 2.0.1 | d3rlpy 2.8.1 | offrl / Tianshou | offrl / d3rlpy | "
        "offrl's fraction of the matmul bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, r in results["sizes"].items():
        u, q = r["updates_per_s"], r["offrl_over"]
        lines.append(
            f"| {size} ({r['obs_shape']}) | {u['offrl']:.1f} | {u['tianshou']:.1f} | "
            f"{u['d3rlpy']:.1f} | {q['tianshou']:.2f} | {q['d3rlpy']:.2f} | "
            f"{100 * r['offrl_bound_fraction']:.0f} % |"
        )
    (out / "speed-discrete.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
