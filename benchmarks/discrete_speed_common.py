"""What the peers' discrete-speed scripts share (``benchmarks/tianshou/speed_discrete.py``,
``benchmarks/d3rlpy/speed_discrete.py``; each runs in its own virtual environment, so this
module needs only NumPy): the command line, the synthetic frames and the timing loop."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    """``--obs-shape C,H,W --num-actions A --quantiles N --threads --seconds --repeats
    --warmup --json`` (the options of ``offrl bench speed`` they are compared with)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--obs-shape", default="4,84,84")
    parser.add_argument("--num-actions", type=int, default=6)
    parser.add_argument("--quantiles", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.shape = tuple(int(x) for x in args.obs_shape.split(","))
    return args


def synthetic_frames(
    shape: tuple[int, ...], actions: int, n: int = 10_000, seed: int = 0
) -> dict[str, np.ndarray]:
    """``n + 1`` random ``uint8`` frames (a tenth of the pixels lit), ``n`` actions and
    rewards, as ``offrl.bench.speed.synthetic_frames`` makes them."""
    rng = np.random.default_rng(seed)
    return {
        "frames": (rng.random((n + 1, *shape)) < 0.1).astype(np.uint8) * 255,
        "actions": rng.integers(0, actions, n),
        "rewards": rng.standard_normal(n).astype(np.float32),
    }


def time_updates(step: Callable[[], None], args: argparse.Namespace) -> list[float]:
    """``--warmup`` calls of ``step``, then updates per second in each of ``--repeats``
    windows sharing ``--seconds`` (five calls between clock reads)."""
    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        count, t0 = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - t0 < args.seconds / args.repeats:
            for _ in range(5):
                step()
            count += 5
        rates.append(count / (time.perf_counter() - t0))
    return rates


def report(
    library: str, algo: str, rates: list[float], args: argparse.Namespace, **extra: Any
) -> None:
    """Print the result (one JSON line with ``--json``)."""
    result = {
        "library": library,
        "algo": algo,
        "updates_per_s": statistics.median(rates),
        "repeats": rates,
        "obs_shape": list(args.shape),
        "num_actions": args.num_actions,
        "quantiles": args.quantiles,
        "threads": args.threads,
        **extra,
    }
    print(json.dumps(result) if args.json else f"{result['updates_per_s']:.1f} updates/s")
