"""Run d3rlpy 2.8.1 on the datasets, seeds and budget of an ``offrl bench`` grid.

Usage (in offrl's environment, after ``bash benchmarks/d3rlpy/setup.sh``)::

    .venv/bin/python benchmarks/d3rlpy/grid.py --grid OUT [--algos td3plusbc,iql,cql] [--workers 2]
    .venv/bin/offrl bench report OUT     # d3rlpy's columns appear next to offrl's

``OUT/grid.json`` (written by ``offrl bench run``, or by hand) gives the datasets, seeds, steps,
evaluation interval and episodes. Every (dataset, algorithm, seed) runs
``benchmarks/d3rlpy/train.py`` in ``benchmarks/.venv-d3rlpy`` as a single-threaded subprocess,
into ``OUT/<dataset>/d3rlpy-<algo>/s<seed>/``, run as ``benchmarks/peer_grid.py`` runs every peer's
cells (done cells skipped, failures in ``error.txt``, a lock per running cell); an unfinished
cell continues from its last checkpoint, written at each evaluation (see train.py). The exit
status is 1 if any cell failed.

Datasets are resolved through offrl: an ``.hdf5`` path is used as it is, a MuJoCo built-in
(``hopper-medium-v0``...) through its cached D4RL-layout HDF5 file, anything else (the
Pendulum built-ins, ``.npz`` files, Minari directories) is exported once to D4RL-layout HDF5
under ``OUT/.d3rlpy-data/``. Normalised scores use offrl's reference table (``offrl.scores``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from offrl.bench.grid import Cell, GridSpec, load_grid
from offrl.data.loaders import load_d4rl_hdf5, load_dataset, save_d4rl_hdf5
from offrl.scores import get_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_grid import Todo, run_cells  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train.py"
VENV_PYTHON = HERE.parent / ".venv-d3rlpy" / "bin" / "python"
ALGOS = ("td3plusbc", "iql", "cql")
PAIRS = {"td3plusbc": "td3bc", "iql": "iql", "cql": "cql"}
"""d3rlpy name -> offrl name (the report's "offrl vs d3rlpy" section pairs them the same way)."""


@dataclass(frozen=True)
class Resolved:
    hdf5: Path
    env_id: str
    ref_min: float | None
    ref_max: float | None


def resolve(dataset: str, out: Path) -> Resolved:
    """The HDF5 file, env id and reference returns of a grid dataset."""
    from offrl.suite.factory import MUJOCO_DATASETS

    p = Path(dataset)
    if p.is_file() and p.suffix.lower() in (".hdf5", ".h5"):
        ds = load_d4rl_hdf5(p)
        hdf5 = p
    elif dataset in MUJOCO_DATASETS:
        from offrl.data.registry import data_dir

        ds = load_dataset(dataset)  # builds and caches the HDF5 file on first use
        hdf5 = data_dir() / "datasets" / f"{dataset}.hdf5"
    else:
        ds = load_dataset(dataset)
        stem = Path(dataset).stem if "/" in dataset else dataset  # as Cell.run_dir names it
        hdf5 = out / ".d3rlpy-data" / f"{stem}.hdf5"
        if not hdf5.exists():
            hdf5.parent.mkdir(parents=True, exist_ok=True)
            save_d4rl_hdf5(ds, hdf5)
    if ds.env_id is None:
        raise ValueError(f"{dataset}: no environment id, cannot evaluate")
    ref = get_reference(ds.env_id)
    return Resolved(
        hdf5.resolve(),
        ds.env_id,
        None if ref is None else ref.random,
        None if ref is None else ref.expert,
    )


def cell_command(
    algo: str, dataset: str, seed: int, data: Resolved, out: Path, spec: GridSpec
) -> list[str]:
    """The train.py command line of one cell."""
    cmd = [str(VENV_PYTHON), str(TRAIN), "--algo", algo, "--hdf5", str(data.hdf5)]
    cmd += ["--env", data.env_id, "--steps", str(spec.steps), "--seed", str(seed)]
    cmd += ["--eval-every", str(spec.eval_every), "--eval-episodes", str(spec.eval_episodes)]
    cmd += ["--dataset-name", dataset, "--threads", "1", "--out", str(out)]
    if data.ref_min is not None and data.ref_max is not None:
        cmd += ["--ref-min", repr(data.ref_min), "--ref-max", repr(data.ref_max)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", required=True, help="an offrl bench grid directory (grid.json)")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated d3rlpy algorithms")
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated subset of the grid's datasets (default all)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel single-threaded runs")
    args = p.parse_args(argv)

    if not VENV_PYTHON.exists():
        print(f"{VENV_PYTHON} is missing: run `bash benchmarks/d3rlpy/setup.sh`", file=sys.stderr)
        return 2
    grid = Path(args.grid)
    spec = load_grid(grid)
    algos = [a for a in args.algos.split(",") if a]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        p.error(f"unknown algorithms {unknown}; use {list(ALGOS)}")

    datasets = spec.datasets
    if args.datasets:
        datasets = [d for d in args.datasets.split(",") if d]
        if not set(datasets) <= set(spec.datasets):
            p.error(f"--datasets must be among the grid's {spec.datasets}")

    todo: list[Todo] = []
    total = 0
    for dataset in datasets:
        data = resolve(dataset, grid)
        for algo in algos:
            for seed in spec.seeds:
                total += 1
                run = Cell(f"d3rlpy-{algo}", dataset, seed).run_dir(grid)
                if (run / "final.json").exists():
                    continue
                key = f"{dataset}/d3rlpy-{algo}/s{seed}"
                todo.append((key, cell_command(algo, dataset, seed, data, run, spec), run))
    return run_cells("d3rlpy", todo, total, args.workers)


if __name__ == "__main__":
    sys.exit(main())
