"""Random kills: training processes (offline, a bench grid, online) killed with SIGKILL at random
moments, checkpoint writes included, then resumed by running the same command again.

Each ends bit-identical to an uninterrupted run: parameters, optimiser, sampler or replay
buffer and random states, every metric but wall-clock speed, ``final.json``. (Online runs
replay exactly because the simulators' state is checkpointed too, :mod:`offrl.train.envstate`.)
``OFFRL_KILLS`` sets the kills per harness (default 3; ``benchmarks/results/ROBUSTNESS.md``
records a run with more), ``OFFRL_KILLS_LENGTH`` multiplies the runs' lengths (default 1; a
longer run leaves room for more kills), ``OFFRL_KILLS_RECORD=path`` appends the counts as JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from offrl.cli import main
from offrl.data import load_dataset
from offrl.train import load_checkpoint, read_metrics

KILLS = int(os.environ.get("OFFRL_KILLS", "3"))
LENGTH = int(os.environ.get("OFFRL_KILLS_LENGTH", "1"))
OFFLINE = [
    "train", "--algo", "bc", "--dataset", "pendulum-medium-v0", "--steps", str(300 * LENGTH),
    "--seed", "1", "--checkpoint-every", "1", "--eval-every", "100", "--eval-episodes", "1",
    "--log-every", "20", "--threads", "1", "--no-progress", "--set", "hidden=[128,128]",
    "--set", "batch_size=64",
]  # fmt: skip
GRID = [
    "bench", "run", "--algos", "bc", "--datasets", "pendulum-medium-v0", "--seeds", "0,1",
    "--steps", str(200 * LENGTH), "--eval-every", "100", "--eval-episodes", "1",
    "--checkpoint-every", "10", "--workers", "1", "--set", "bc.hidden=[32,32]",
]  # fmt: skip
ONLINE = [
    "online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", str(600 * LENGTH),
    "--start-steps", "200", "--eval-every", "300", "--eval-episodes", "1",
    "--checkpoint-every", "50", "--snapshot-every", "0", "--threads", "1", "--no-progress",
    "--set", "hidden=[32,32]", "--set", "batch_size=64",
]  # fmt: skip

FINETUNE = [
    "finetune", "--algo", "balanced_replay", "--dataset", "pendulum-medium-v0",
    "--offline-steps", str(100 * LENGTH), "--steps", str(400 * LENGTH), "--eval-every", "200",
    "--offline-eval-every", "100", "--eval-episodes", "1", "--checkpoint-every", "50",
    "--buffer-size", str(400 * LENGTH), "--threads", "1", "--no-progress",
    "--set", "members=2", "hidden=[32,32]", "batch_size=64",
]  # fmt: skip


def _record(name: str, stats: dict[str, int]) -> None:
    target = os.environ.get("OFFRL_KILLS_RECORD")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"harness": name, **stats}) + "\n")


def _progress(out: Path) -> int:
    """How far the runs under ``out`` have come: checkpoint files and logged bytes."""
    steps = sum(1 for _ in out.rglob("step_*.pt"))
    logged = sum(p.stat().st_size for p in out.rglob("metrics.jsonl") if p.exists())
    return steps + logged


def _kill_and_resume(cmd: list[str], out: Path, seed: int, runs: int = 1) -> dict[str, int]:
    """Run ``cmd`` (which resumes what is in ``out``) up to :data:`KILLS` times, each killed
    with SIGKILL (its whole process group) at a random moment after it has made progress past
    the previous kill, until the ``runs`` run directories under ``out`` are finished; then once
    more (a finished run resumes to itself). Returns how many kills landed, and how many left
    a temporary file behind (killed inside an atomic write)."""
    rng = random.Random(seed)
    stats = {"kills": 0, "kills_inside_a_write": 0, "finished_before_the_kill": 0}
    full = [sys.executable, "-m", "offrl.cli", *cmd]
    for _ in range(KILLS):
        if len(list(out.rglob("final.json"))) >= runs:
            break
        before = _progress(out) if out.exists() else 0
        proc = subprocess.Popen(
            full, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and _progress(out) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stats["kills"] += 1
            stats["kills_inside_a_write"] += any(out.rglob(".*.tmp"))
        else:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            stats["finished_before_the_kill"] += 1
        if proc.stderr is not None:
            proc.stderr.close()
    done = subprocess.run(full, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not list(out.rglob(".*.tmp")), "a temporary file survived the resumes"
    return stats


def _same_tensors(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        # Bit for bit; nan (a replay buffer's unknown returns-to-go) equals nan.
        same = a.shape == b.shape and a.dtype == b.dtype
        assert same and torch.equal(a.nan_to_num(0.5), b.nan_to_num(0.5)), where
        assert torch.equal(a.isnan(), b.isnan()) if a.is_floating_point() else True, where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _same_run(a: Path, b: Path, states: tuple[str, ...] = ("algo", "sampler")) -> None:
    """Run directories ``a`` and ``b`` hold the same result: the checkpoint's ``states``, every
    metric but wall-clock speed, ``final.json``; and ``b``'s CSV has every record."""
    ca, cb = (load_checkpoint(p / "checkpoints" / "latest.pt") for p in (a, b))
    for name in states:
        _same_tensors(ca[name], cb[name], name)

    def records(run: Path) -> list[dict[str, Any]]:
        clock = ("updates_per_s", "env_steps_per_s")
        return [
            {k: v for k, v in r.items() if k not in clock}
            for r in read_metrics(run / "metrics.jsonl")
        ]

    assert records(a) == records(b)
    assert json.loads((a / "final.json").read_text()) == json.loads((b / "final.json").read_text())
    csv_rows = (b / "metrics.csv").read_text().strip().splitlines()
    assert len(csv_rows) == len(records(b)) + 1


@pytest.fixture(scope="module", autouse=True)
def _data() -> None:
    load_dataset("pendulum-medium-v0")  # built once, before any subprocess needs it


def test_offline_runs_killed_at_random_resume_to_the_same_result(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert main([*OFFLINE, "--out", str(reference)]) == 0
    out = tmp_path / "killed"
    stats = _kill_and_resume([*OFFLINE, "--out", str(out), "--resume"], out, seed=0)
    _record("offline", stats)
    assert stats["kills"] >= 1, stats
    _same_run(reference, out)


def test_a_bench_grid_killed_at_random_resumes_to_the_same_cells(tmp_path: Path) -> None:
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main([*GRID, "--out", str(reference)]) == 0
    stats = _kill_and_resume([*GRID, "--out", str(out)], out, seed=1, runs=2)
    _record("grid", stats)
    assert stats["kills"] >= 1, stats
    cells = sorted(p.parent for p in reference.rglob("final.json"))
    assert len(cells) == 2
    for cell in cells:
        _same_run(cell, out / cell.relative_to(reference))


def test_online_runs_killed_at_random_resume_to_the_same_result(tmp_path: Path) -> None:
    """Pendulum's simulator state is saved with the checkpoint (offrl.train.envstate), so the
    episodes in flight continue and the run replays exactly."""
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main([*ONLINE, "--out", str(reference)]) == 0
    stats = _kill_and_resume([*ONLINE, "--out", str(out), "--resume"], out, seed=2)
    _record("online", stats)
    assert stats["kills"] >= 1, stats
    _same_run(reference, out, states=("algo", "buffer", "numpy_rng", "sample_generator"))


def test_finetuning_killed_at_random_resumes_to_the_same_result(tmp_path: Path) -> None:
    """Killed in the offline phase (a member's training) or the online one (the ensemble, its
    buffer, priorities and density network), the run ends as an uninterrupted one."""
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main([*FINETUNE, "--out", str(reference)]) == 0
    stats = _kill_and_resume([*FINETUNE, "--out", str(out), "--resume"], out, seed=3)
    _record("finetune", stats)
    assert stats["kills"] >= 1, stats
    _same_run(reference, out, states=("algo", "buffer", "sampler", "numpy_rng", "sample_generator"))
    for member in ("offline-0", "offline-1"):
        _same_run(reference / member, out / member)
