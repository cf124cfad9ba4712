"""Gradient updates per second of Tianshou 2.0.1's DiscreteCQL (QR-DQN + CQL, the algorithm
offrl's ``discrete_cql`` equals) on synthetic frames: the Tianshou side of
``benchmarks/compare_speed_discrete.py``. Runs in benchmarks/.venv-tianshou.

One timed step is Tianshou's own offline update, ``algorithm.update(buffer, sample_size=32)``:
it samples the batch from its ``ReplayBuffer``, computes the one-step targets from the target
network (``_preprocess_batch``) and makes the gradient step. The network is the one offrl's
``DiscreteQNetwork`` builds (and Tianshou's Atari examples use): the Nature DQN for 84 x 84
frames, MinAtar's single convolution and 128 units for 10 x 10; 200 quantiles, target network
copied every 500 updates, Adam lr 1e-4, ``min_q_weight`` 10. Data: 10 000 transitions of random
``uint8`` frames (a tenth of the pixels lit), scaled by 1/255 inside the network as offrl does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.imitation.discrete_cql import DiscreteCQL
from tianshou.algorithm.modelfree.qrdqn import QRDQNPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn


class QNet(nn.Module):
    """Frames -> quantiles ``[B, A, N]``: offrl's ``DiscreteQNetwork`` layout."""

    def __init__(self, shape: tuple[int, int, int], actions: int, quantiles: int) -> None:
        super().__init__()
        c, h, _ = shape
        if h == 10:  # MinAtar
            convs = [nn.Conv2d(c, 16, 3, 1), nn.ReLU()]
            features = 128
        else:  # the Nature DQN
            convs = [
                nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
            ]  # fmt: skip
            features = 512
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out = nn.Linear(features, actions * quantiles)
        self.actions, self.quantiles = actions, quantiles

    def forward(self, obs, state=None, info=None):  # noqa: ANN001, ANN201
        x = torch.as_tensor(obs)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        q = self.out(self.fc(self.convs(x)))
        return q.view(-1, self.actions, self.quantiles), state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--obs-shape", default="4,84,84")
    parser.add_argument("--num-actions", type=int, default=6)
    parser.add_argument("--quantiles", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = tuple(int(x) for x in args.obs_shape.split(","))
    n, a = 10_000, args.num_actions
    rng = np.random.default_rng(0)
    frames = (rng.random((n + 1, *shape)) < 0.1).astype(np.uint8) * 255
    terminated = np.zeros(n, dtype=bool)
    buffer = ReplayBuffer.from_data(
        obs=frames[:-1], act=rng.integers(0, a, n), rew=rng.standard_normal(n).astype(np.float32),
        terminated=terminated, truncated=np.zeros(n, dtype=bool), done=terminated,
        obs_next=frames[1:],
    )  # fmt: skip
    net = QNet(shape, a, args.quantiles)  # type: ignore[arg-type]
    policy = QRDQNPolicy(model=net, action_space=gym.spaces.Discrete(a))
    algo = DiscreteCQL(
        policy=policy, optim=AdamOptimizerFactory(lr=1e-4), min_q_weight=10.0,
        num_quantiles=args.quantiles, target_update_freq=500,
    )  # fmt: skip
    algo.train()
    rates = []
    with policy_within_training_step(policy):  # what Tianshou's trainer sets around updates
        for _ in range(args.warmup):
            algo.update(buffer=buffer, sample_size=args.batch_size)
        for _ in range(args.repeats):
            count, t0 = 0, time.perf_counter()
            while count == 0 or time.perf_counter() - t0 < args.seconds / args.repeats:
                for _ in range(5):
                    algo.update(buffer=buffer, sample_size=args.batch_size)
                count += 5
            rates.append(count / (time.perf_counter() - t0))
    result = {
        "library": "tianshou",
        "algo": "DiscreteCQL",
        "updates_per_s": statistics.median(rates),
        "repeats": rates,
        "obs_shape": list(shape),
        "num_actions": a,
        "quantiles": args.quantiles,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch_version": torch.__version__,
    }
    print(json.dumps(result) if args.json else f"{result['updates_per_s']:.1f} updates/s")


if __name__ == "__main__":
    main()
