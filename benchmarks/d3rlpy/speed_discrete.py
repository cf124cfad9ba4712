"""Gradient updates per second of d3rlpy 2.8.1's DiscreteCQL on synthetic frames, configured
as offrl's ``discrete_cql`` (the d3rlpy side of ``benchmarks/compare_speed_discrete.py``).
Runs in benchmarks/.venv-d3rlpy.

d3rlpy's DiscreteCQL is double DQN plus CQL's penalty; with ``QRQFunctionFactory(200)`` its
Q-function is QR-DQN's, so the update is the same algorithm as offrl's: 200 quantiles,
``alpha`` 10, Adam lr 1e-4, target copied every 500 updates, batch 32. The encoder is the
Nature DQN's for 84 x 84 frames (d3rlpy's default ``PixelEncoderFactory``), MinAtar's single
3 x 3 convolution of 16 channels and 128 units for 10 x 10; frames are scaled by
``PixelObservationScaler`` (1/255), as offrl scales them. One timed step is the body of
d3rlpy's ``fitter`` loop (``benchmarks/d3rlpy/speed.py``'s ``run_steps``): sample a transition
batch, then ``algo.update``. Data: 10 000 transitions of random ``uint8`` frames (a tenth of
the pixels lit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import run_steps  # noqa: E402


def main() -> None:
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
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset
    from d3rlpy.models import PixelEncoderFactory, QRQFunctionFactory
    from d3rlpy.preprocessing import PixelObservationScaler

    torch.set_num_threads(args.threads)
    d3rlpy.seed(0)
    shape = tuple(int(x) for x in args.obs_shape.split(","))
    n, a = 10_000, args.num_actions
    rng = np.random.default_rng(0)
    frames = (rng.random((n, *shape)) < 0.1).astype(np.uint8) * 255
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[999::1000] = 1.0
    dataset = MDPDataset(
        observations=frames, actions=rng.integers(0, a, n),
        rewards=rng.standard_normal(n).astype(np.float32), terminals=np.zeros(n, np.float32),
        timeouts=timeouts, action_space=ActionSpace.DISCRETE, action_size=a,
    )  # fmt: skip
    encoder = (
        PixelEncoderFactory(filters=[[16, 3, 1]], feature_size=128)
        if shape[1] == 10
        else PixelEncoderFactory()
    )
    algo = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=32, learning_rate=1e-4, target_update_interval=500, alpha=10.0,
        encoder_factory=encoder, q_func_factory=QRQFunctionFactory(n_quantiles=args.quantiles),
        observation_scaler=PixelObservationScaler(),
    ).create(device="cpu:0")  # fmt: skip
    algo.build_with_dataset(dataset)
    losses: dict[str, list[float]] = defaultdict(list)
    run_steps(algo, dataset, args.warmup, losses)
    rates = []
    for _ in range(args.repeats):
        count, t0 = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - t0 < args.seconds / args.repeats:
            run_steps(algo, dataset, 5, losses)
            count += 5
        rates.append(count / (time.perf_counter() - t0))
    result = {
        "library": "d3rlpy",
        "algo": "DiscreteCQL(QRQFunctionFactory)",
        "updates_per_s": statistics.median(rates),
        "repeats": rates,
        "obs_shape": list(shape),
        "num_actions": a,
        "quantiles": args.quantiles,
        "batch_size": 32,
        "threads": args.threads,
        "torch_version": torch.__version__,
    }
    print(json.dumps(result) if args.json else f"{result['updates_per_s']:.1f} updates/s")


if __name__ == "__main__":
    main()
