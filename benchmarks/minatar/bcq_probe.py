"""What a trained discrete BCQ chooses on its dataset's states, against the expert that made
the data: how many actions its imitator allows, how sure the imitator is, and how often the
imitator's, the Q-values' and BCQ's choices are the expert's.

    .venv/bin/python benchmarks/minatar/bcq_probe.py RUN/checkpoints/latest.pt \
        minatar-breakout-noisy-v0 Breakout [STATES]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from offrl.data import load_dataset
from offrl.suite.minatar import expert_file, load_expert
from offrl.train.checkpoint import load_algorithm


def main(checkpoint: str, dataset: str, game: str, states: int = 5000) -> None:
    algo = load_algorithm(checkpoint)
    data = load_dataset(dataset)
    idx = np.random.default_rng(0).choice(len(data.rewards), states, replace=False)
    obs = data.observations[idx]
    expert = torch.as_tensor(load_expert(expert_file(game)).act(obs))
    with torch.no_grad():
        x = torch.as_tensor(obs)
        q, logits = algo.q.outputs(x)
        allowed = algo.allowed(logits)
        chosen = algo.policy(x)
    counts = np.bincount(allowed.sum(-1).numpy(), minlength=algo.spec.action_dim + 1)[1:]
    agree = {
        "imitator": logits.argmax(-1),
        "Q-values": q[..., 0].argmax(-1),
        "BCQ": chosen,
    }
    print(f"states allowing 1, 2, ... actions: {np.round(counts / states, 3).tolist()}")
    print(
        f"imitator's top probability, mean: {float(torch.softmax(logits, -1).amax(-1).mean()):.2f}"
    )
    for name, actions in agree.items():
        print(f"{name}'s choice is the expert's: {float((actions == expert).float().mean()):.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:4], *(int(a) for a in sys.argv[4:5]))
