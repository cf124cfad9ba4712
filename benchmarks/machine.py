"""Machine-load helpers shared by the benchmark scripts (offrl's and d3rlpy's environments).

Torch's worker threads slow down many-fold when another process takes one of a 2-core machine's
cores, so both sides of a speed comparison wait for a quiet machine and record how busy it was.
Standard library only: this file is imported from both virtual environments.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

__all__ = [
    "cpu_times",
    "busy_cores",
    "wait_for_quiet",
    "cpu_model",
    "load_average",
    "git_commit",
]


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(window: float = 1.0) -> float | None:
    """Cores kept busy over ``window`` seconds, while this process sleeps (others' load)."""
    before = cpu_times()
    time.sleep(window)
    after = cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def wait_for_quiet(max_wait: float, threshold: float) -> float | None:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores.

    Returns the last busy figure (``None`` where /proc/stat is unavailable).
    """
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy is not None and busy >= threshold and time.monotonic() < deadline:
        busy = busy_cores()
    return busy


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages, rounded."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    """The repository's short commit hash, or None outside a git checkout."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None
