"""Tianshou 2.0.1's replay buffers, filled and saved with ``save_hdf5``, with what Tianshou itself
reads back from them: the files ``tests/test_tianshou_files.py`` loads in offrl.

Run in Tianshou's virtual environment (``bash benchmarks/tianshou/setup.sh``)::

    benchmarks/.venv-tianshou/bin/python benchmarks/tianshou/write_buffers.py --out DIR

Each case is a buffer of one kind filled with seeded random episodes (lengths 3 to 12, ended by
``terminated`` or ``truncated``, the last one left running), saved as ``DIR/<case>.hdf5``, and
``DIR/<case>.npz`` with, for every stored transition in the order ``sample_indices(0)`` gives
(oldest first per sub-buffer), what Tianshou's own ``buffer[indices]`` returns: ``obs`` (frame
stacked by Tianshou where the buffer stacks), ``act``, ``rew``, ``terminated``, ``truncated``,
``obs_next`` (where the buffer keeps it); plus ``indices`` and the sub-buffer of each row.

Cases: ``plain`` (vector observations, discrete actions, never full), ``wrapped`` (full, the
ring overwritten: its oldest episode starts mid-way), ``continuous`` (box actions),
``vector`` (a ``VectorReplayBuffer`` of 3 sub-buffers, one of them wrapped), and ``atari`` (the
second seed's ``VectorReplayBuffer(ignore_obs_next=True, save_only_last_obs=True,
stack_num=4)`` of uint8 frames, as its ``--save-buffer-name`` writes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer


def _fill(buf: ReplayBuffer, n: int, envs: int, obs_shape: tuple, act: str, rng) -> None:
    """``n`` steps from ``envs`` environments at once (one row per environment per step)."""
    left = rng.integers(3, 13, envs)
    step = np.zeros(envs, dtype=np.int64)
    episode = np.arange(envs)
    for _ in range(n):
        obs = rng.integers(0, 255, (envs, *obs_shape)).astype(
            np.uint8 if len(obs_shape) > 1 else np.float32
        )
        if len(obs_shape) == 1:
            obs[:, 0] = episode * 100 + step  # a readable tag: episode and step
        done = step + 1 >= left
        terminated = done & (rng.random(envs) < 0.5)
        truncated = done & ~terminated
        if act == "discrete":
            action = rng.integers(0, 6, envs)
        else:
            action = rng.uniform(-1, 1, (envs, 2)).astype(np.float32)
        batch = Batch(
            obs=obs,
            act=action,
            rew=rng.normal(size=envs).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            obs_next=obs + 1,
            info=Batch(),
        )
        # A plain ReplayBuffer takes one transition; a VectorReplayBuffer one per sub-buffer.
        buf.add(batch if isinstance(buf, VectorReplayBuffer) else batch[0])
        step = np.where(done, 0, step + 1)
        new = done.nonzero()[0]
        episode[new] = episode.max() + 1 + np.arange(len(new))
        left[new] = rng.integers(3, 13, len(new))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {
        "plain": (lambda: ReplayBuffer(200), 1, 150, (4,), "discrete"),
        "wrapped": (lambda: ReplayBuffer(50), 1, 137, (4,), "discrete"),
        "continuous": (lambda: ReplayBuffer(100), 1, 80, (3,), "continuous"),
        "vector": (lambda: VectorReplayBuffer(90, 3), 3, 40, (4,), "discrete"),
        "atari": (
            lambda: VectorReplayBuffer(
                120, 2, ignore_obs_next=True, save_only_last_obs=True, stack_num=4
            ),
            2,
            70,
            (4, 6, 6),  # [stack, H, W]: save_only_last_obs keeps the last frame
            "discrete",
        ),
    }
    for k, (name, (make, envs, n, shape, act)) in enumerate(cases.items()):
        rng = np.random.default_rng(args.seed + k)
        buf = make()
        _fill(buf, n, envs, shape, act, rng)
        buf.save_hdf5(str(out / f"{name}.hdf5"))
        back = type(buf).load_hdf5(str(out / f"{name}.hdf5"))
        idx = back.sample_indices(0)
        rows = back[idx]
        arrays = {
            "indices": idx,
            "obs": np.asarray(rows.obs),
            "act": np.asarray(rows.act),
            "rew": np.asarray(rows.rew),
            "terminated": np.asarray(rows.terminated),
            "truncated": np.asarray(rows.truncated),
        }
        if not getattr(back, "_save_only_last_obs", False) and back._save_obs_next:
            arrays["obs_next"] = np.asarray(rows.obs_next)
        np.savez(out / f"{name}.npz", **arrays)
        print(name, len(idx), "rows", arrays["obs"].shape)


if __name__ == "__main__":
    main()
