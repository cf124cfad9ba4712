"""Run Tianshou 2.0.1's discrete offline algorithms on the datasets, seeds and budget of an
``offrl bench`` grid (the second seed's own library, beside offrl's discrete algorithms).

Usage (in offrl's environment, after ``bash benchmarks/tianshou/setup.sh``)::

    .venv/bin/python benchmarks/tianshou/grid.py --grid OUT [--algos bcq,cql,crr,crr_cql]
    .venv/bin/offrl bench report OUT     # an "offrl vs tianshou" table, with updates/s

``OUT/grid.json`` gives the datasets, seeds, steps, evaluation interval and episodes. Every
(dataset, algorithm, seed) runs ``benchmarks/tianshou/train_discrete.py`` in
``benchmarks/.venv-tianshou`` as a single-threaded subprocess into
``OUT/<dataset>/tianshou-<algo>/s<seed>/``, as ``benchmarks/peer_grid.py`` runs every peer's
cells (done cells skipped, failures in ``error.txt``, a lock per running cell). The report pairs
``tianshou-bcq`` / ``-cql`` / ``-crr`` / ``-crr_cql`` with offrl's ``discrete_bcq`` /
``discrete_cql`` / ``discrete_crr`` / ``discrete_crr_cql``.

Datasets are offrl ``.npz`` files: a registered name's cached file (``offrl dataset make``), an
offrl ``.npz`` path as it is, anything else exported once under ``OUT/.tianshou-data/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from offrl.bench.grid import GridSpec
from offrl.data.loaders import load_dataset, load_npz, save_npz
from offrl.data.registry import data_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_grid import peer_main  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train_discrete.py"
VENV_PYTHON = HERE.parent / ".venv-tianshou" / "bin" / "python"
ALGOS = ("bcq", "cql", "crr", "crr_cql")


def resolve(dataset: str, out: Path) -> Path:
    """The offrl ``.npz`` file of a grid dataset."""
    cached = data_dir() / "datasets" / f"{dataset}.npz"
    p = Path(dataset)
    if p.is_file() and p.suffix == ".npz":
        load_npz(p)  # an offrl (or plain) .npz: rejected here, with the field, if malformed
        return p.resolve()
    ds = load_dataset(dataset)  # builds and caches a registered dataset on first use
    if cached.exists():
        return cached.resolve()
    stem = p.stem if "/" in dataset else dataset  # as Cell.run_dir names it
    path = out / ".tianshou-data" / f"{stem}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(ds, path)
    return path.resolve()


def cell_command(
    algo: str, dataset: str, seed: int, npz: Path, run: Path, spec: GridSpec
) -> list[str]:
    """The train_discrete.py command line of one cell."""
    return [
        str(VENV_PYTHON), str(TRAIN), "--algo", algo, "--npz", str(npz),
        "--steps", str(spec.steps), "--seed", str(seed), "--eval-every", str(spec.eval_every),
        "--eval-episodes", str(spec.eval_episodes), "--threads", "1", "--out", str(run),
        "--final-eval-episodes", str(spec.final_eval_episodes),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return peer_main("tianshou", __doc__ or "", ALGOS, VENV_PYTHON, resolve, cell_command, 1, argv)


if __name__ == "__main__":
    sys.exit(main())
