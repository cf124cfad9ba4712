"""Running a peer library's cells beside an ``offrl bench`` grid: what ``benchmarks/d3rlpy/grid.py``
and ``benchmarks/tianshou/grid.py`` share (run in offrl's environment).

Each cell is one subprocess (the peer's training script in the peer's virtual environment,
single-threaded) writing ``final.json`` into ``OUT/<dataset>/<peer>-<algo>/s<seed>/``. A cell
whose ``final.json`` exists is done and skipped, so an interrupted run is resumed by running the
command again. A failing cell leaves the tail of its output in ``error.txt`` and the others go
on. A running cell holds a lock on ``<run>/.lock`` (``flock``: the kernel drops it when the
process ends, killed or not), so two grid processes on the same folder never run the same cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from offrl.bench.grid import Cell, GridSpec, claim, load_grid
from offrl.io import atomic_write_bytes

Todo = tuple[str, list[str], Path]
"""One cell to run: ``(key, command, run directory)``."""


def run_cell(cmd: list[str], run: Path) -> tuple[bool, str]:
    """Run one cell's command single-threaded: ``(ok, the last line of its output if not)``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode == 0 and (run / "final.json").exists():
        (run / "error.txt").unlink(missing_ok=True)
        return True, ""
    tail = (proc.stdout + proc.stderr)[-4000:]
    atomic_write_bytes(run / "error.txt", f"exit status {proc.returncode}\n{tail}".encode())
    return False, tail.strip().splitlines()[-1] if tail.strip() else f"exit {proc.returncode}"


def run_one(key: str, cmd: list[str], run: Path) -> tuple[str, str, str, float]:
    """Run one cell unless another process is running it or it finished meanwhile:
    ``(key, "done" | "failed" | "skipped", detail, seconds)``."""
    t0 = time.perf_counter()
    run.mkdir(parents=True, exist_ok=True)
    with claim(run / ".lock") as mine:
        if not mine:
            return key, "skipped", "running in another process", 0.0
        ok, detail = (True, "") if (run / "final.json").exists() else run_cell(cmd, run)
    if ok:
        final = json.loads((run / "final.json").read_text())
        score = final["normalized_score"]
        detail = f"score {score:.1f}" if score is not None else f"return {final['return_mean']:.1f}"
    return key, "done" if ok else "failed", detail, time.perf_counter() - t0


def run_cells(peer: str, todo: list[Todo], total: int, workers: int) -> int:
    """Run ``todo`` (of ``total`` cells) on ``workers`` parallel processes, printing each
    outcome; returns the exit status (1 if any cell failed)."""
    print(f"{total} {peer} cells, {total - len(todo)} done, {len(todo)} to run", flush=True)
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in as_completed([pool.submit(run_one, *item) for item in todo]):
            key, status, detail, seconds = future.result()
            print(f"[{status}] {key} ({seconds:.0f} s) {detail}", flush=True)
            if status == "failed":
                failed.append(key)
    if failed:
        print(f"{len(failed)} failed: see error.txt in their directories", file=sys.stderr)
    return 1 if failed else 0


def peer_main(
    peer: str,
    doc: str,
    algos: Sequence[str],
    venv_python: Path,
    resolve: Callable[[str, Path], Any],
    command: Callable[[str, str, int, Any, Path, GridSpec], list[str]],
    workers: int = 1,
    argv: list[str] | None = None,
) -> int:
    """A peer grid's command line: ``--grid OUT [--algos A,B] [--datasets D,E] [--workers N]``.
    Every (dataset, algorithm, seed) of the grid without a ``final.json`` runs ``command(algo,
    dataset, seed, resolve(dataset, OUT), run directory, spec)`` through :func:`run_cells`."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--grid", required=True, help="an offrl bench grid directory (grid.json)")
    p.add_argument("--algos", default=",".join(algos), help=f"comma-separated {peer} algorithms")
    p.add_argument("--datasets", default=None, help="a subset of the grid's datasets (default all)")
    p.add_argument("--workers", type=int, default=workers, help="parallel single-threaded runs")
    args = p.parse_args(argv)
    if not venv_python.exists():
        print(f"{venv_python} is missing: run `bash benchmarks/{peer}/setup.sh`", file=sys.stderr)
        return 2
    grid = Path(args.grid)
    spec = load_grid(grid)
    chosen = [a for a in args.algos.split(",") if a]
    unknown = sorted(set(chosen) - set(algos))
    if unknown:
        p.error(f"unknown algorithms {unknown}; use {list(algos)}")
    datasets = [d for d in args.datasets.split(",") if d] if args.datasets else spec.datasets
    if not set(datasets) <= set(spec.datasets):
        p.error(f"--datasets must be among the grid's {spec.datasets}")
    todo: list[Todo] = []
    total = 0
    for dataset in datasets:
        data = resolve(dataset, grid)
        for algo in chosen:
            for seed in spec.seeds:
                total += 1
                run = Cell(f"{peer}-{algo}", dataset, seed).run_dir(grid)
                if not (run / "final.json").exists():
                    key = f"{dataset}/{peer}-{algo}/s{seed}"
                    todo.append((key, command(algo, dataset, seed, data, run, spec), run))
    return run_cells(peer, todo, total, args.workers)
