"""What the peers' training scripts share (``benchmarks/d3rlpy/train.py``,
``benchmarks/tianshou/train_discrete.py``; each runs in its peer's virtual environment, so this
module needs only the standard library and NumPy): writing a run's files the way offrl writes
them, and running evaluation episodes the way offrl runs them."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a flushed temporary file and a rename: a reader sees
    the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def start_run(out: str, script: str, argv: list[str] | None) -> Path:
    """Create the run directory ``out`` and its ``command.txt``: the command line that
    reproduces the run (this interpreter, ``script``, and ``argv`` or the process's own)."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    used = sys.argv[1:] if argv is None else argv
    command = shlex.join([sys.executable, os.path.abspath(script), *used])
    atomic_write(path / "command.txt", command + "\n")
    return path


def run_episodes(envs: Any, act: Callable[[Any], Any], seed: int) -> np.ndarray:
    """The return of one episode in each environment of the vector environment ``envs``,
    reset with seeds ``seed, seed + 1, ...``, acting with ``act(observations) -> actions``:
    offrl's ``offrl.train.evaluation.evaluate`` loop. Closes ``envs``."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=[seed + i for i in range(n)])
    returns = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        obs, rew, term, trunc, _ = envs.step(act(obs))
        returns += rew * active
        active &= ~(term | trunc)
    envs.close()
    return returns
