"""``offrl bench report`` with external runs (d3rlpy's columns) and ``benchmarks/d3rlpy/train.py``
itself when its virtual environment exists."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from offrl.bench.grid import Cell, GridSpec, claim, grid_cells
from offrl.bench.report import collect_external, write_report

ROOT = Path(__file__).resolve().parents[1]
D3RLPY_PYTHON = ROOT / "benchmarks" / ".venv-d3rlpy" / "bin" / "python"


def _run(run: Path, score: float | None, ret: float, steps: tuple[int, ...] = (5, 10)) -> None:
    run.mkdir(parents=True)
    (run / "final.json").write_text(json.dumps({"normalized_score": score, "return_mean": ret}))
    records = [
        {"step": s, "kind": "eval", "eval/normalized_score": score, "eval/return_mean": ret}
        for s in steps
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _grid(out: Path, seeds: list[int]) -> GridSpec:
    spec = GridSpec(["td3bc", "iql"], ["d1", "d2"], seeds, steps=10, eval_every=5, eval_episodes=1)
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(spec.to_dict()))
    for cell in grid_cells(spec):
        score = 10.0 * cell.seed + (50.0 if cell.algo == "td3bc" else 30.0)
        _run(cell.run_dir(out), score, score)
    return spec


def test_external_columns_in_table_json_and_commands(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    _grid(out, seeds=[0, 1, 2])
    # d3rlpy's TD3+BC: every dataset x seed (complete); its IQL: one seed of d1 and a failure.
    ext = {"d1": [40.0, 44.0, 48.0], "d2": [20.0, 20.0, 26.0]}
    for ds, scores in ext.items():
        for seed, score in enumerate(scores):
            run = Cell("d3rlpy-td3plusbc", ds, seed).run_dir(out)
            _run(run, score, score)
            (run / "command.txt").write_text(f"python train.py --algo td3plusbc --seed {seed}\n")
    _run(Cell("d3rlpy-iql", "d1", 0).run_dir(out), 33.0, 33.0)
    failed = Cell("d3rlpy-iql", "d1", 1).run_dir(out)
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("exit status 1\nTraceback ...\nValueError: boom\n")
    (Cell("d3rlpy-iql", "d1", 2).run_dir(out)).mkdir(parents=True)  # started, nothing yet

    external = collect_external(out)
    assert sorted({(r.algo, r.status) for r in external}) == [
        ("d3rlpy-iql", "done"),
        ("d3rlpy-iql", "failed"),
        ("d3rlpy-td3plusbc", "done"),
    ]
    report = write_report(out, reps=50)
    md = (out / "REPORT.md").read_text()
    assert "| dataset | td3bc | iql | d3rlpy-iql | d3rlpy-td3plusbc |" in md
    d1 = f"44.0 ± {np.std([40.0, 44.0, 48.0]):.1f}"
    assert f"| d1 | 60.0 ± {np.std([50, 60, 70]):.1f} | 40.0 ± " in md
    assert f"| 33.0 ± 0.0 (1/3 seeds) | {d1} |" in md
    assert f"| d2 | 60.0 ± {np.std([50, 60, 70]):.1f} | 40.0 ± 8.2 | – | 22.0 ± 2.8 |" in md
    # report.json: grid algorithms under "table", external runs under "external".
    assert set(report["table"]["d1"]) == {"td3bc", "iql"}
    assert report["external"]["table"]["d1"]["d3rlpy-td3plusbc"]["scores"] == ext["d1"]
    assert report["external"]["table"]["d2"]["d3rlpy-iql"]["scores"] == []
    statuses = {
        (c["algo"], c["dataset"], c["seed"]): c["status"] for c in report["external"]["cells"]
    }
    assert statuses[("d3rlpy-iql", "d1", 1)] == "failed"
    assert "d1 / d3rlpy-iql / seed 1: failed: ValueError: boom" in md
    assert "python train.py --algo td3plusbc --seed 2" in report["external"]["commands"]
    assert "python train.py --algo td3plusbc --seed 2" in md
    # Complete external columns enter the aggregate; incomplete ones do not.
    assert set(report["aggregate"]) == {"td3bc", "iql", "d3rlpy-td3plusbc"}
    # offrl vs d3rlpy: td3bc (offrl) next to td3plusbc (d3rlpy); IQL only where both exist.
    versus = {(v["dataset"], v["offrl"]): v for v in report["offrl_vs_d3rlpy"]}
    assert set(versus) == {("d1", "td3bc"), ("d2", "td3bc"), ("d1", "iql")}
    assert versus[("d2", "td3bc")]["difference"] == pytest.approx(60.0 - 22.0)
    assert "## offrl vs d3rlpy" in md and "| d1 | td3bc / d3rlpy-td3plusbc |" in md
    # Per evaluation (both evaluate at steps 5 and 10 with the final score): the seeds' means.
    assert versus[("d2", "td3bc")]["per_evaluation"] == [(5, 60.0, 22.0), (10, 60.0, 22.0)]
    assert versus[("d1", "iql")]["per_evaluation"] == [(5, 40.0, 33.0), (10, 40.0, 33.0)]
    assert "| +38.0 | – | 5: 60.0 / 22.0, 10: 60.0 / 22.0 |" in md
    assert (out / "curves_d1.png").exists()


def test_versus_per_evaluation_means_over_seeds_at_shared_steps(tmp_path: Path) -> None:
    """Each side's mean over seeds at every evaluation step that all runs share."""
    out = tmp_path / "grid"
    spec = GridSpec(["td3bc"], ["d1"], [0, 1], steps=10, eval_every=5, eval_episodes=1)
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(spec.to_dict()))
    curves = {
        Cell("td3bc", "d1", 0): [(5, 10.0), (10, 20.0)],
        Cell("td3bc", "d1", 1): [(5, 30.0), (10, 60.0)],
        Cell("d3rlpy-td3plusbc", "d1", 0): [(5, 1.0), (10, 2.0), (15, 9.0)],  # 15: not shared
        Cell("d3rlpy-td3plusbc", "d1", 1): [(5, 3.0), (10, 4.0)],
    }
    for cell, curve in curves.items():
        run = cell.run_dir(out)
        run.mkdir(parents=True)
        final = {"normalized_score": curve[-1][1], "return_mean": 0.0}
        (run / "final.json").write_text(json.dumps(final))
        rows = [{"step": s, "kind": "eval", "eval/normalized_score": v} for s, v in curve]
        rows.insert(1, {"step": 7, "kind": "train", "critic_loss": 1.0})  # not an evaluation
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report(out, reps=20)
    (versus,) = report["offrl_vs_d3rlpy"]
    assert versus["per_evaluation"] == [(5, 20.0, 2.0), (10, 40.0, 3.0)]
    assert "| 5: 20.0 / 2.0, 10: 40.0 / 3.0 |" in (out / "REPORT.md").read_text()


def test_versus_tianshou_pairs_discrete_algorithms_with_their_update_rates(
    tmp_path: Path,
) -> None:
    """Tianshou's columns (``benchmarks/tianshou/grid.py``) pair with offrl's discrete
    algorithms; updates/s is each side's median over its train rows, averaged over seeds."""
    out = tmp_path / "grid"
    spec = GridSpec(["discrete_cql", "bc"], ["d1"], [0, 1], steps=10, eval_every=5, eval_episodes=1)
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(spec.to_dict()))
    rates = {"discrete_cql": [(100.0, 140.0, 120.0), (130.0,)], "tianshou-cql": [(50.0,), (70.0,)]}
    for algo, per_seed in {**rates, "bc": [(), ()]}.items():
        for seed, seed_rates in enumerate(per_seed):
            run = Cell(algo, "d1", seed).run_dir(out)
            run.mkdir(parents=True)
            ret = 4.0 + seed if algo == "discrete_cql" else 3.0
            (run / "final.json").write_text(
                json.dumps({"normalized_score": None, "return_mean": ret})
            )
            rows = [
                *(
                    {"step": 1 + i, "kind": "train", "updates_per_s": r}
                    for i, r in enumerate(seed_rates)
                ),
                {"step": 10, "kind": "eval", "eval/return_mean": ret},
            ]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report(out, reps=20)
    assert report["offrl_vs_d3rlpy"] == []
    (versus,) = report["offrl_vs_tianshou"]
    assert versus["tianshou"] == "tianshou-cql" and versus["difference"] == pytest.approx(1.5)
    assert versus["offrl_updates_per_s"] == pytest.approx((120.0 + 130.0) / 2)
    assert versus["peer_updates_per_s"] == pytest.approx(60.0)
    md = (out / "REPORT.md").read_text()
    assert "## offrl vs tianshou" in md
    assert (
        "| d1 | discrete_cql / tianshou-cql | 4.5 ± 0.5 | 3.0 ± 0.0 | +1.5 | 125 / 60 (2.08×) |"
        in md
    )


def test_report_without_external_runs_is_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    _grid(out, seeds=[0])
    report = write_report(out, reps=50)
    md = (out / "REPORT.md").read_text()
    assert "| dataset | td3bc | iql |" in md and "offrl vs d3rlpy" not in md
    assert report["external"] == {"table": {}, "cells": [], "commands": []}


@pytest.mark.slow
@pytest.mark.skipif(not D3RLPY_PYTHON.exists(), reason="run benchmarks/d3rlpy/setup.sh first")
def test_d3rlpy_train_script_writes_a_run_directory(tmp_path: Path) -> None:
    from offrl.data import load_dataset, save_d4rl_hdf5

    hdf5 = save_d4rl_hdf5(load_dataset("pendulum-random-v0"), tmp_path / "pendulum.hdf5")
    run = tmp_path / "run"
    cmd = [str(D3RLPY_PYTHON), str(ROOT / "benchmarks" / "d3rlpy" / "train.py")]
    cmd += ["--algo", "td3plusbc", "--hdf5", str(hdf5), "--env", "Pendulum-v1"]
    cmd += ["--steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--seed", "3"]
    cmd += ["--ref-min", "-1000", "--ref-max", "0", "--log-every", "100", "--out", str(run)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["kind"]) for r in rows] == [
        (100, "train"),
        (100, "eval"),
        (200, "train"),
        (200, "eval"),
    ]
    assert math.isfinite(rows[0]["critic_loss"]) and math.isfinite(rows[2]["actor_loss"])
    evals = [r for r in rows if r["kind"] == "eval"]
    final = json.loads((run / "final.json").read_text())
    assert final["library"] == "d3rlpy 2.8.1" and final["seed"] == 3 and final["steps"] == 200
    assert final["return_mean"] == evals[-1]["eval/return_mean"]
    assert final["normalized_score"] == pytest.approx(100 * (final["return_mean"] + 1000) / 1000)
    assert final["config"]["alpha"] == 2.5
    assert "--algo td3plusbc" in (run / "command.txt").read_text()


@pytest.mark.skipif(not D3RLPY_PYTHON.exists(), reason="run benchmarks/d3rlpy/setup.sh first")
def test_d3rlpy_train_script_killed_run_resumes_exactly(tmp_path: Path) -> None:
    """A d3rlpy cell killed after its first checkpoint, run again, ends where an uninterrupted
    run ends: same evaluations, bit for bit."""
    from offrl.data import load_dataset, save_d4rl_hdf5

    hdf5 = save_d4rl_hdf5(load_dataset("pendulum-medium-v0"), tmp_path / "pendulum.hdf5")
    cmd = [str(D3RLPY_PYTHON), str(ROOT / "benchmarks" / "d3rlpy" / "train.py")]
    cmd += ["--algo", "iql", "--hdf5", str(hdf5), "--env", "Pendulum-v1", "--steps", "600"]
    # Train rows every 150 steps straddle the checkpoints (every 200): their sums travel with them.
    cmd += ["--eval-every", "200", "--eval-episodes", "2", "--seed", "1", "--log-every", "150"]
    cmd += ["--out"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*cmd, str(whole)], check=True, capture_output=True, timeout=600)
    assert not (whole / "checkpoint").exists()  # removed once the run is complete
    steps = [json.loads(x)["step"] for x in (whole / "metrics.jsonl").read_text().splitlines()]
    assert steps == [150, 200, 300, 400, 450, 600, 600]

    proc = subprocess.Popen([*cmd, str(killed)], stderr=subprocess.DEVNULL)
    latest = killed / "checkpoint" / "latest.json"
    deadline = time.monotonic() + 300
    while not (latest.exists() and json.loads(latest.read_text())["step"] >= 200):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (killed / "final.json").exists()

    resumed = subprocess.run([*cmd, str(killed)], check=True, capture_output=True, timeout=600)
    assert b"resuming from step" in resumed.stderr
    assert (killed / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    a, b = (json.loads((r / "final.json").read_text()) for r in (whole, killed))
    assert b["resumed_from_step"] >= 200 and a["resumed_from_step"] == 0
    assert a["return_mean"] == b["return_mean"]


def test_peer_grid_cell_lock_skips_a_cell_running_elsewhere(tmp_path: Path) -> None:
    """Two grid processes on one folder never run the same cell: a locked cell is skipped (not
    failed), a free one runs, and one that finished meanwhile is not run again
    (``benchmarks/peer_grid.py``, which d3rlpy's and Tianshou's grids run their cells with)."""
    grid = load_script("peer_grid.py", "peer_grid")
    run = tmp_path / "ds" / "d3rlpy-cql" / "s0"
    final = {"normalized_score": 42.0, "return_mean": 1.0}
    # Stands in for train.py: counts its runs, writes final.json.
    code = (
        "import json, pathlib, sys; r = pathlib.Path(sys.argv[1]); "
        "(r / 'runs').open('a').write('x'); "
        f"(r / 'final.json').write_text(json.dumps({final!r}))"
    )
    cmd = [sys.executable, "-c", code, str(run)]
    with claim(run / ".lock") as mine:  # another grid process holds the cell
        assert mine
        assert grid.run_one("k", cmd, run)[1:3] == ("skipped", "running in another process")
        with claim(run / ".lock") as again:
            assert not again
    assert not (run / "final.json").exists()
    key, status, detail, _ = grid.run_one("k", cmd, run)
    assert (key, status, detail) == ("k", "done", "score 42.0")
    assert grid.run_one("k", cmd, run)[1] == "done"  # finished meanwhile: not run again
    assert (run / "runs").read_text() == "x"
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    other = tmp_path / "ds" / "d3rlpy-cql" / "s1"
    assert grid.run_one("k1", failing, other)[1] == "failed"
    assert "exit status 3" in (other / "error.txt").read_text()
