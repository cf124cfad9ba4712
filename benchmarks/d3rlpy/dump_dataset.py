"""d3rlpy 2.8.1 writes dataset files, and says what it reads back from them.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/dump_dataset.py --out DIR [--case NAME]

For every case it writes ``DIR/<case>.h5`` with d3rlpy's own ``dump`` and ``DIR/<case>.json``:
what d3rlpy reports after loading that file back (``ReplayBuffer.load``, or ``load_v1`` for the
1.x layout) -- the detected action space and size, each episode's ``size()``,
``transition_count``, ``compute_return()`` and ``terminated``, and every transition its
``BasicTransitionPicker`` makes (observation, action, reward, next observation, terminal).
``tests/test_d3rlpy_files.py`` loads the same files with offrl and compares.

Cases (known arrays, several episodes, terminated and timed out):

``continuous``
    ``MDPDataset`` from flat arrays: float32 observations ``[N, 3]``, actions ``[N, 2]``;
    episodes of 4 (terminal), 3 (timeout), 1 (terminal), 1 (timeout: no transition),
    5 (timeout) and 2 (terminal) steps.
``discrete``
    A ``ReplayBuffer`` filled step by step through its writer (``append`` /
    ``clip_episode``, as d3rlpy's online loop does): uint8 image observations ``[1, 3, 3]``,
    integer actions of 4 choices; episodes of 3 (terminal), 4 (timeout) and 2 (terminal) steps.
``v1``
    d3rlpy 1.x's flat layout (``observations``, ``actions``, ``rewards``, ``terminals``,
    ``episode_terminals``), read by d3rlpy 2.8.1's ``load_v1``; two rows after the last episode
    end belong to no episode.

``tests/data/d3rlpy_small.h5`` / ``.json`` (committed) are the ``continuous`` case::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/dump_dataset.py --out tests/data \\
        --case continuous --name d3rlpy_small
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import d3rlpy
import h5py
import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import (
    InfiniteBuffer,
    MDPDataset,
    ReplayBuffer,
    Signature,
)
from d3rlpy.dataset.io import DATASET_VERSION, load_v1


def ends_to_flags(lengths: list[int], terminated: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    n = sum(lengths)
    terminals = np.zeros(n, dtype=np.float32)
    timeouts = np.zeros(n, dtype=np.float32)
    end = -1
    for length, term in zip(lengths, terminated, strict=True):
        end += length
        (terminals if term else timeouts)[end] = 1.0
    return terminals, timeouts


def continuous(path: Path) -> ReplayBuffer:
    lengths = [4, 3, 1, 1, 5, 2]
    terminated = [True, False, True, False, False, True]
    n = sum(lengths)
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(n, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    rewards = (np.arange(n, dtype=np.float32) - 5.0) / 4.0
    terminals, timeouts = ends_to_flags(lengths, terminated)
    dataset = MDPDataset(observations, actions, rewards, terminals, timeouts)
    with open(path, "w+b") as f:
        dataset.dump(f)
    with open(path, "rb") as f:
        return ReplayBuffer.load(f, InfiniteBuffer())


def discrete(path: Path) -> ReplayBuffer:
    lengths = [3, 4, 2]
    terminated = [True, False, True]
    buffer = ReplayBuffer(
        InfiniteBuffer(),
        observation_signature=Signature(dtype=[np.uint8], shape=[(1, 3, 3)]),
        action_signature=Signature(dtype=[np.int64], shape=[(1,)]),
        reward_signature=Signature(dtype=[np.float32], shape=[(1,)]),
        action_space=ActionSpace.DISCRETE,
        action_size=4,
    )
    rng = np.random.default_rng(1)
    step = 0
    for length, term in zip(lengths, terminated, strict=True):
        for _ in range(length):
            obs = rng.integers(0, 256, size=(1, 3, 3), dtype=np.uint8)
            buffer.append(obs, int(rng.integers(0, 4)), float(step % 3) - 0.5)
            step += 1
        buffer.clip_episode(term)
    with open(path, "w+b") as f:
        buffer.dump(f)
    with open(path, "rb") as f:
        return ReplayBuffer.load(f, InfiniteBuffer())


def v1(path: Path) -> ReplayBuffer:
    lengths = [3, 2, 4]
    terminated = [False, True, False]
    n = sum(lengths) + 2  # two rows after the last episode end
    rng = np.random.default_rng(2)
    terminals, timeouts = ends_to_flags([*lengths, 2], [*terminated, False])
    timeouts[-1] = 0.0  # the two trailing rows end no episode
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=rng.normal(size=(n, 2)).astype(np.float32))
        f.create_dataset("actions", data=rng.uniform(-1, 1, size=(n, 1)).astype(np.float32))
        f.create_dataset("rewards", data=np.linspace(-1, 1, n, dtype=np.float32))
        f.create_dataset("terminals", data=terminals)
        f.create_dataset("episode_terminals", data=np.maximum(terminals, timeouts))
        f.create_dataset("discrete_action", data=False)
        f.create_dataset("version", data="1.0")
    with open(path, "rb") as f:
        return ReplayBuffer(InfiniteBuffer(), episodes=load_v1(f))


CASES = {"continuous": continuous, "discrete": discrete, "v1": v1}


def report(buffer: ReplayBuffer) -> dict[str, Any]:
    """What d3rlpy says about a loaded buffer: episodes and the transitions it samples."""
    info = buffer.dataset_info
    picker = buffer.transition_picker
    episodes = []
    fields: dict[str, list[Any]] = {
        "observations": [],
        "actions": [],
        "rewards": [],
        "next_observations": [],
        "terminals": [],
    }
    for episode in buffer.episodes:
        picked = [picker(episode, i) for i in range(episode.transition_count)]
        episodes.append(
            {
                "size": episode.size(),
                "transition_count": episode.transition_count,
                "return": episode.compute_return(),
                "terminated": bool(episode.terminated),
                "transition_return": float(sum(float(t.reward[0]) for t in picked)),
            }
        )
        for t in picked:
            fields["observations"].append(np.asarray(t.observation).tolist())
            fields["actions"].append(np.asarray(t.action).tolist())
            fields["rewards"].append(float(t.reward[0]))
            fields["next_observations"].append(np.asarray(t.next_observation).tolist())
            fields["terminals"].append(bool(t.terminal))
    return {
        "library": f"d3rlpy {d3rlpy.__version__}",
        "dataset_version": DATASET_VERSION,
        "action_space": "discrete" if info.action_space == ActionSpace.DISCRETE else "continuous",
        "action_size": int(info.action_size),
        "num_episodes": len(buffer.episodes),
        "transition_count": int(buffer.transition_count),
        "episodes": episodes,
        "transitions": fields,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for the files")
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--name", help="file name stem (with a single --case)")
    args = parser.parse_args()
    cases = args.case or sorted(CASES)
    if args.name and len(cases) != 1:
        parser.error("--name needs exactly one --case")
    args.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        stem = args.name or case
        buffer = CASES[case](args.out / f"{stem}.h5")
        with open(args.out / f"{stem}.json", "w", encoding="utf-8") as fh:
            json.dump({"case": case, **report(buffer)}, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
