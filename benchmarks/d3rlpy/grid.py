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

import sys
from dataclasses import dataclass
from pathlib import Path

from offrl.bench.grid import GridSpec
from offrl.data.loaders import load_d4rl_hdf5, load_dataset, save_d4rl_hdf5
from offrl.scores import get_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_grid import peer_main  # noqa: E402

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
    return peer_main("d3rlpy", __doc__ or "", ALGOS, VENV_PYTHON, resolve, cell_command, 2, argv)


if __name__ == "__main__":
    sys.exit(main())
