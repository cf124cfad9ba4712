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

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.imitation.discrete_cql import DiscreteCQL
from tianshou.algorithm.modelfree.qrdqn import QRDQNPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from discrete_speed_common import parse_args, report, synthetic_frames, time_updates  # noqa: E402
from nets import Head, Trunk  # noqa: E402


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a = args.num_actions
    data = synthetic_frames(args.shape, a)
    n = len(data["rewards"])
    terminated = np.zeros(n, dtype=bool)
    buffer = ReplayBuffer.from_data(
        obs=data["frames"][:-1], act=data["actions"], rew=data["rewards"], terminated=terminated,
        truncated=np.zeros(n, dtype=bool), done=terminated, obs_next=data["frames"][1:],
    )  # fmt: skip
    net = Head(Trunk(args.shape), a, args.quantiles)
    policy = QRDQNPolicy(model=net, action_space=gym.spaces.Discrete(a))
    algo = DiscreteCQL(
        policy=policy, optim=AdamOptimizerFactory(lr=1e-4), min_q_weight=10.0,
        num_quantiles=args.quantiles, target_update_freq=500,
    )  # fmt: skip
    algo.train()
    with policy_within_training_step(policy):  # what Tianshou's trainer sets around updates
        rates = time_updates(lambda: algo.update(buffer=buffer, sample_size=32), args)
    report("tianshou", "DiscreteCQL", rates, args, batch_size=32, torch_version=torch.__version__)


if __name__ == "__main__":
    main()
