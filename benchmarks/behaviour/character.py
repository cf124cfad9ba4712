"""The character of offrl's MuJoCo datasets, for issue 25's question of why the algorithms do
not separate on them: size, episodes and their lengths, the spread of the behaviour's
D4RL-normalised return over episodes, and how the actions were drawn (the fraction of action
components at the box's edge, and the actions' standard deviation; uniform random actions in
[-1, 1] have 0.58).

    OFFRL_DATA_DIR=... .venv/bin/python benchmarks/behaviour/character.py [NAME ...]
"""

from __future__ import annotations

import sys

import numpy as np

from offrl.data import load_dataset
from offrl.scores import normalized_score

DEFAULT = ("halfcheetah-medium-v0", "hopper-medium-v0", "hopper-medium-expert-v0",
           "walker2d-medium-replay-v0")  # fmt: skip


def main(names: list[str]) -> None:
    print(
        "| dataset | transitions | episodes | length mean / median | terminated | "
        "normalised return mean ± std [p10, p90] | actions at the edge | action std |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        ds = load_dataset(name)
        returns = ds.episode_returns()
        ends = np.flatnonzero(ds.terminals | ds.timeouts)
        lengths = np.diff(np.concatenate([[-1], ends]))
        norm = np.array([normalized_score(str(ds.env_id), float(r)) for r in returns])
        edge = float(np.mean(np.abs(ds.actions) > 0.99))
        print(
            f"| `{name}` | {len(ds.rewards):,} | {len(returns):,} | {lengths.mean():.0f} / "
            f"{np.median(lengths):.0f} | {int(ds.terminals.sum()):,} | {norm.mean():.1f} ± "
            f"{norm.std():.1f} [{np.percentile(norm, 10):.1f}, {np.percentile(norm, 90):.1f}] | "
            f"{edge:.2f} | {float(ds.actions.std(0).mean()):.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or list(DEFAULT))
