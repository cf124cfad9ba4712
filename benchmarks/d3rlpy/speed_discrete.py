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

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from discrete_speed_common import parse_args, report, synthetic_frames, time_updates  # noqa: E402
from speed import run_steps  # noqa: E402


def main() -> None:
    args = parse_args()
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset
    from d3rlpy.models import PixelEncoderFactory, QRQFunctionFactory
    from d3rlpy.preprocessing import PixelObservationScaler

    torch.set_num_threads(args.threads)
    d3rlpy.seed(0)
    a = args.num_actions
    data = synthetic_frames(args.shape, a)
    n = len(data["rewards"])
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[999::1000] = 1.0
    dataset = MDPDataset(
        observations=data["frames"][:-1], actions=data["actions"], rewards=data["rewards"],
        terminals=np.zeros(n, np.float32), timeouts=timeouts, action_space=ActionSpace.DISCRETE,
        action_size=a,
    )  # fmt: skip
    encoder = (
        PixelEncoderFactory(filters=[[16, 3, 1]], feature_size=128)
        if args.shape[1] == 10
        else PixelEncoderFactory()
    )
    algo = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=32, learning_rate=1e-4, target_update_interval=500, alpha=10.0,
        encoder_factory=encoder, q_func_factory=QRQFunctionFactory(n_quantiles=args.quantiles),
        observation_scaler=PixelObservationScaler(),
    ).create(device="cpu:0")  # fmt: skip
    algo.build_with_dataset(dataset)
    losses: dict[str, list[float]] = defaultdict(list)
    rates = time_updates(lambda: run_steps(algo, dataset, 1, losses), args)
    report(
        "d3rlpy", "DiscreteCQL(QRQFunctionFactory)", rates, args, batch_size=32,
        torch_version=torch.__version__,
    )  # fmt: skip


if __name__ == "__main__":
    main()
