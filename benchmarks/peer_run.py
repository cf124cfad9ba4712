"""What the peers' training scripts share (``benchmarks/d3rlpy/train.py``,
``benchmarks/tianshou/train_discrete.py``; each runs in its peer's virtual environment, so this
module needs only the standard library): writing a run's files the way offrl writes them."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path


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
