"""Tianshou 2.0.1's discrete algorithms beside an ``offrl bench`` grid
(``benchmarks/tianshou/grid.py`` running ``train_discrete.py`` in Tianshou's own venv): the same
dataset file, budget and seeds as offrl's cells, and an "offrl vs tianshou" table in the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _minatar import breakout_dataset

from offrl.bench.grid import Cell
from offrl.bench.report import write_report
from offrl.cli import main as offrl_main
from offrl.data.loaders import load_npz, save_npz

ROOT = Path(__file__).resolve().parents[1]
TIANSHOU_PYTHON = ROOT / "benchmarks" / ".venv-tianshou" / "bin" / "python"
pytestmark = [
    pytest.mark.skipif(not TIANSHOU_PYTHON.exists(), reason="run benchmarks/tianshou/setup.sh"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_tianshou_cells_run_beside_offrls_and_pair_in_the_report(tmp_path: Path) -> None:
    data = tmp_path / "breakout.npz"
    save_npz(breakout_dataset(episodes=10), data)
    # Evaluated in offrl's own MinAtar environment, which train_discrete.py loads by path.
    save_npz(load_npz(data, env_id="offrl/MinAtar-Breakout-v1"), data)
    out = tmp_path / "grid"
    common = ["--datasets", str(data), "--seeds", "0", "--steps", "60", "--eval-every", "30"]
    common += ["--eval-episodes", "2", "--final-eval-episodes", "2"]
    assert (
        offrl_main(
            ["bench", "run", "--algos", "discrete_cql,discrete_crr", *common, "--out", str(out)]
        )
        == 0
    )
    script = ROOT / "benchmarks" / "tianshou" / "grid.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--grid", str(out), "--algos", "cql,crr"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = Cell("tianshou-cql", str(data), 0).run_dir(out)
    final = json.loads((run / "final.json").read_text())
    assert final["library"] == "tianshou 2.0.1" and final["steps"] == 60
    assert final["updates_per_s"] > 0 and final["env_id"] == "offrl/MinAtar-Breakout-v1"
    assert len(final["final_eval"]["returns"]) == 2  # the grid's final_eval_episodes
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [30, 60]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [60]  # every 1000 and the last
    assert "python" in (run / "command.txt").read_text()
    report = write_report(out, reps=20)
    pairs = {(v["offrl"], v["tianshou"]) for v in report["offrl_vs_tianshou"]}
    assert pairs == {("discrete_cql", "tianshou-cql"), ("discrete_crr", "tianshou-crr")}
    for row in report["offrl_vs_tianshou"]:
        assert row["offrl_updates_per_s"] > 0 and row["peer_updates_per_s"] > 0
        assert [step for step, _, _ in row["per_evaluation"]] == [30, 60]
    final_evals = {(r["algo"], r["dataset"]): r for r in report["evaluation"]}
    assert final_evals[("tianshou-cql", str(data))]["final_eval"] is not None


def test_a_tianshou_cell_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """train_discrete.py's checkpoint holds the whole state: 30 updates, then the same command
    with 60, equals 60 updates in one go (losses, evaluations; the update counter that times
    the target copies and the buffer's NumPy sampling included)."""
    data = tmp_path / "breakout.npz"
    save_npz(load_npz(_small_breakout(tmp_path), env_id="offrl/MinAtar-Breakout-v1"), data)
    script = ROOT / "benchmarks" / "tianshou" / "train_discrete.py"

    def train(out: Path, steps: int) -> list[dict]:
        cmd = [str(TIANSHOU_PYTHON), str(script), "--algo", "crr_cql", "--npz", str(data)]
        cmd += ["--steps", str(steps), "--eval-every", "15", "--log-every", "5", "--seed", "3"]
        cmd += ["--eval-episodes", "2", "--final-eval-episodes", "0", "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "updates_per_s"} for x in lines]

    whole = train(tmp_path / "whole", 60)
    assert train(tmp_path / "parts", 30) == whole[: len(whole) // 2]
    assert train(tmp_path / "parts", 60) == whole  # resumed at 30 (target copied at 0 and 500)
    assert [r["step"] for r in whole if r["kind"] == "eval"] == [15, 30, 45, 60]
    other = [str(TIANSHOU_PYTHON), str(script), "--algo", "cql", "--npz", str(data)]
    other += ["--steps", "60", "--out", str(tmp_path / "parts")]
    proc = subprocess.run(other, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "--algo was 'crr_cql', now 'cql'" in proc.stderr


def _small_breakout(tmp_path: Path) -> Path:
    path = tmp_path / "small.npz"
    save_npz(breakout_dataset(episodes=10), path)
    return path
