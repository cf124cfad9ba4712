"""``offrl bench run`` / ``report``: resume after a kill, failure reporting, the statistics on
results with known answers, and the local and Ray executors agreeing on a tiny grid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _devices import needs_cuda

from offrl.bench.grid import (
    GridSpec,
    claim,
    export_results,
    grid_cells,
    grid_command,
    load_grid,
    ray_resources,
    run_cell,
    run_grid,
    train_command,
)
from offrl.bench.report import aggregate, collect, performance_profile, write_report
from offrl.cli import main

TINY = dict(steps=100, eval_every=100, eval_episodes=1, final_eval_episodes=2, checkpoint_every=50)


def _finals(out: Path) -> dict[str, float]:
    """mtime of every finished cell's final.json."""
    return {str(p.relative_to(out)): p.stat().st_mtime for p in out.rglob("final.json")}


def test_killed_grid_resumes_only_unfinished_cells(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    cmd = [sys.executable, "-m", "offrl.cli", "bench", "run", "--algos", "bc"]
    cmd += ["--datasets", "pendulum-medium-v0", "--seeds", "0,1,2", "--steps", "100"]
    cmd += ["--eval-every", "100", "--eval-episodes", "1", "--final-eval-episodes", "2"]
    cmd += ["--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not _finals(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole grid dies, workers included
    proc.wait()
    before = _finals(out)
    assert 1 <= len(before) < 3, before

    log: list[str] = []
    result = run_grid(load_grid(out), out, workers=1, log=log.append)
    assert log[0].startswith(f"3 cells, {len(before)} done, {3 - len(before)} to run")
    assert result["ran"] == 3 - len(before) and not result["failed"]
    after = _finals(out)
    assert len(after) == 3
    for cell, mtime in before.items():  # finished cells were not run again
        assert after[cell] == mtime
    # Each cell is an ordinary run directory.
    run = grid_cells(load_grid(out))[0].run_dir(out)
    assert {"config.json", "metrics.jsonl", "final.json"} <= {p.name for p in run.iterdir()}


def test_failed_cell_is_reported_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid"
    args = ["bench", "run", "--algos", "bc,td3bc", "--datasets", "pendulum-medium-v0"]
    args += ["--seeds", "0", "--steps", "100", "--eval-every", "100", "--eval-episodes", "1"]
    args += ["--workers", "2", "--out", str(out), "--set", "td3bc.no_such_option=1"]
    assert main(args) == 1  # a failed cell makes the command fail
    printed = capsys.readouterr().out
    assert "[failed] pendulum-medium-v0/td3bc/s0" in printed and "no_such_option" in printed
    status = json.loads((out / "status.json").read_text())
    assert status["pendulum-medium-v0/bc/s0"]["status"] == "done"
    assert status["pendulum-medium-v0/td3bc/s0"]["status"] == "failed"
    assert (
        "no_such_option" in (out / "pendulum-medium-v0" / "td3bc" / "s0" / "error.txt").read_text()
    )
    (tmp_path / "notes.md").write_text("td3bc failed on purpose.\n")
    report = write_report(out, reps=50, notes=tmp_path / "notes.md")
    md = (out / "REPORT.md").read_text()
    assert "## Notes\n\ntd3bc failed on purpose." in md
    # A notes file with its own heading is not given a second one.
    (tmp_path / "notes.md").write_text("## Notes\n\ntd3bc failed on purpose.\n")
    write_report(out, reps=50, notes=tmp_path / "notes.md")
    md = (out / "REPORT.md").read_text()
    assert md.count("## Notes") == 1 and "## Notes\n\ntd3bc failed on purpose." in md
    assert "Cells without a result" in md and "td3bc / seed 0: failed" in md
    assert "**Partial results:** 1 of 2 cells have finished" in md
    assert report["table"]["pendulum-medium-v0"]["td3bc"]["scores"] == []
    # The data's behaviour, in the scores' unit (Pendulum's medium data: about -528 return).
    from offrl.data import load_dataset
    from offrl.scores import normalized_score

    behaviour = load_dataset("pendulum-medium-v0").stats().return_mean
    want = normalized_score("Pendulum-v1", behaviour)
    assert report["behaviour"]["pendulum-medium-v0"] == pytest.approx(want)
    assert f"| pendulum-medium-v0 | {want:.1f} |" in md
    # A different protocol in the same directory is refused.
    with pytest.raises(ValueError, match="steps"):
        run_grid(GridSpec(["bc"], ["pendulum-medium-v0"], [0], steps=200), out)
    # A part of the grid runs only its own cells (bc is done: nothing runs, td3bc is not
    # retried); the manifest and the report keep the whole grid.
    part = GridSpec(["bc"], ["pendulum-medium-v0"], [0], steps=100, eval_every=100)
    part.eval_episodes = 1
    result = run_grid(part, out, log=lambda _: None)
    assert result["ran"] == 0 and result["failed"] == ["pendulum-medium-v0/td3bc/s0"]
    assert load_grid(out).algos == ["bc", "td3bc"]
    # A dry run lists what would run (the failed cell) and runs nothing.
    log: list[str] = []
    whole = GridSpec(["bc", "td3bc"], ["pendulum-medium-v0"], [0], steps=100, eval_every=100)
    whole.eval_episodes = 1
    dry = run_grid(whole, out, log=log.append, dry_run=True)
    assert dry["ran"] == 0 and log[1:] == ["[to run] pendulum-medium-v0/td3bc/s0"]
    assert (
        json.loads((out / "status.json").read_text())["pendulum-medium-v0/td3bc/s0"]["status"]
        == "failed"
    )


def test_cell_in_another_process_is_skipped(tmp_path: Path) -> None:
    """Two grid processes on one directory never train the same cell: a locked cell is
    reported as skipped (not failed, not done) and the next run trains it."""
    out = tmp_path / "grid"
    spec = GridSpec(["bc"], ["pendulum-medium-v0"], [0, 1], **TINY)
    locked = grid_cells(spec)[0]
    log: list[str] = []
    with claim(locked.run_dir(out) / ".lock") as mine:
        assert mine
        with claim(locked.run_dir(out) / ".lock") as again:  # another holder is refused
            assert not again
        result = run_grid(spec, out, workers=1, log=log.append)
    assert result["skipped"] == [locked.key] and result["ran"] == 1 and not result["failed"]
    assert f"[skipped] {locked.key} (0 s) running in another process" in log
    assert not (locked.run_dir(out) / "final.json").exists()
    assert locked.key not in json.loads((out / "status.json").read_text())
    again_log: list[str] = []
    result = run_grid(spec, out, workers=1, log=again_log.append)  # the lock is free now
    assert result["ran"] == 1 and result["skipped"] == []
    assert (locked.run_dir(out) / "final.json").exists()
    # A cell finished by another process while this one waited is not trained again.
    config = {"out": str(locked.run_dir(out)), "imports": []}
    assert run_cell(config)["status"] == "done"


def _fake_grid(out: Path, scores: dict[str, dict[str, list[float]]], seeds: list[int]) -> None:
    algos = list(scores)
    datasets = list(next(iter(scores.values())))
    spec = GridSpec(algos, datasets, seeds, steps=10, eval_every=5, eval_episodes=1)
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(spec.to_dict()))
    for cell in grid_cells(spec):
        run = cell.run_dir(out)
        run.mkdir(parents=True)
        score = scores[cell.algo][cell.dataset][cell.seed]
        final = {"normalized_score": score, "return_mean": score}
        (run / "final.json").write_text(json.dumps(final))
        records = [
            {"step": 5, "kind": "eval", "eval/normalized_score": score / 2},
            {"step": 10, "kind": "eval", "eval/normalized_score": score},
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_report_statistics_known_answers(tmp_path: Path) -> None:
    # 4 seeds x 2 datasets = 8 runs per algorithm.
    skewed = {"d1": [0.0, 1.0, 2.0, 3.0], "d2": [4.0, 5.0, 6.0, 100.0]}
    flat = {"d1": [50.0] * 4, "d2": [50.0] * 4}
    out = tmp_path / "grid"
    _fake_grid(out, {"skewed": skewed, "flat": flat}, seeds=[0, 1, 2, 3])
    report = write_report(out, reps=500)
    agg = report["aggregate"]
    # IQM drops the lowest and highest quarter: mean(2, 3, 4, 5) = 3.5; the mean is 121 / 8.
    assert agg["skewed"]["iqm"] == pytest.approx(3.5)
    assert agg["skewed"]["mean"] == pytest.approx(121 / 8)
    lo, hi = agg["skewed"]["iqm_ci"]
    assert lo <= 3.5 <= hi and hi > lo
    assert agg["flat"]["iqm"] == 50.0 and agg["flat"]["iqm_ci"] == [50.0, 50.0]
    # The table: mean ± population std over seeds.
    assert report["table"]["d2"]["skewed"]["scores"] == [4.0, 5.0, 6.0, 100.0]
    md = (out / "REPORT.md").read_text()
    assert f"| d1 | 1.5 ± {np.std([0, 1, 2, 3]):.1f} | 50.0 ± 0.0 |" in md
    assert (out / "aggregate.png").exists() and (out / "curves_d1.png").exists()
    assert len(collect(out)) == 16
    # Performance profile: the fraction of the 8 runs scoring above tau.
    profile = performance_profile(
        {"skewed": np.array([skewed["d1"], skewed["d2"]]).T}, np.array([-1.0, 2.5, 99.0])
    )
    assert profile["skewed"] == pytest.approx([1.0, 5 / 8, 1 / 8])


def test_aggregate_equal_scores_have_no_spread() -> None:
    agg = aggregate({"x": np.full((3, 2), 7.0)}, reps=100)
    assert agg["x"]["iqm"] == 7.0 and agg["x"]["mean_ci"] == [7.0, 7.0]


def test_local_and_ray_executors_give_the_same_table(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    spec = GridSpec(["bc"], ["pendulum-medium-v0"], [0, 1], **TINY)  # type: ignore[arg-type]
    run_grid(spec, tmp_path / "local", executor="local", workers=2, log=lambda _: None)
    run_grid(spec, tmp_path / "ray", executor="ray", log=lambda _: None)
    local = write_report(tmp_path / "local", reps=50)["table"]
    remote = write_report(tmp_path / "ray", reps=50)["table"]
    assert local == remote
    assert len(local["pendulum-medium-v0"]["bc"]["scores"]) == 2


def test_export_keeps_results_and_restores_a_grid_on_a_fresh_machine(tmp_path: Path) -> None:
    src, saved, fresh = tmp_path / "grid", tmp_path / "saved", tmp_path / "fresh"
    spec = GridSpec(["bc"], ["pendulum-medium-v0"], [0, 1], **TINY)  # type: ignore[arg-type]
    run_grid(spec, src, workers=1, log=lambda _: None)
    # An external column (d3rlpy's) that failed, and one unfinished cell with only a checkpoint.
    failed = src / "pendulum-medium-v0" / "d3rlpy-td3plusbc" / "s0"
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("exit status 1\nValueError: boom\n")
    unfinished = src / "pendulum-medium-v0" / "bc" / "s7"
    (unfinished / "checkpoints").mkdir(parents=True)
    assert list(src.rglob("checkpoints/*.pt"))

    assert main(["bench", "export", str(src), str(saved)]) == 0
    assert (
        not list(saved.rglob("checkpoints")) and not (saved / "pendulum-medium-v0/bc/s7").exists()
    )
    run = saved / "pendulum-medium-v0" / "bc" / "s0"
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "final.json"}
    assert (saved / "pendulum-medium-v0/d3rlpy-td3plusbc/s0/error.txt").exists()
    status = json.loads((saved / "status.json").read_text())
    assert status["pendulum-medium-v0/bc/s0"]["status"] == "done"
    # The copy gives the same table, failures included; --to leaves the copy as it is.
    report = write_report(src, reps=50)
    copy = write_report(saved, reps=50, to=tmp_path / "report")
    assert copy["table"] == report["table"] and copy["external"] == report["external"]
    assert (tmp_path / "report" / "REPORT.md").exists() and not (saved / "REPORT.md").exists()

    # A fresh machine: the copy restores the grid, and only the cell it lacks runs again.
    shutil.rmtree(saved / "pendulum-medium-v0" / "bc" / "s1")
    assert export_results(saved, fresh) == {
        "copied": ["pendulum-medium-v0/bc/s0", "pendulum-medium-v0/d3rlpy-td3plusbc/s0"],
        "kept": [],
    }
    log: list[str] = []
    result = run_grid(load_grid(fresh), fresh, workers=1, log=log.append)
    assert log[0].startswith("2 cells, 1 done, 1 to run") and result["ran"] == 1
    # Back into the saved copy: s0 is kept (finished there), s1 is added.
    assert export_results(fresh, saved)["kept"] == ["pendulum-medium-v0/bc/s0"]
    assert (saved / "pendulum-medium-v0" / "bc" / "s1" / "final.json").exists()
    # A different protocol is refused, as `bench run` refuses it.
    other = GridSpec(["bc"], ["pendulum-medium-v0"], [0], **{**TINY, "steps": 50, "eval_every": 50})
    run_grid(other, tmp_path / "other", dry_run=True, log=lambda _: None)
    with pytest.raises(ValueError, match="different \\['steps', 'eval_every'\\]"):
        export_results(tmp_path / "other", saved)


def test_restore_leaves_a_cell_that_is_training_alone(tmp_path: Path) -> None:
    """Restoring an archive whose copy of a cell is an earlier failure does not replace the
    files of that cell while another grid process re-runs it (its lock held); once the lock is
    free, the failure is restored as before."""
    archive, grid = tmp_path / "archive", tmp_path / "grid"
    spec = GridSpec(["bc"], ["pendulum-medium-v0"], [0], **TINY)  # type: ignore[arg-type]
    run_grid(spec, archive, dry_run=True, log=lambda _: None)
    failed = archive / "pendulum-medium-v0" / "bc" / "s0"
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("exit status 1\n")
    (failed / "metrics.jsonl").write_text('{"step": 1}\n')
    running = grid / "pendulum-medium-v0" / "bc" / "s0"
    running.mkdir(parents=True)
    (running / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    with claim(running / ".lock") as mine:
        assert mine
        assert export_results(archive, grid)["kept"] == ["pendulum-medium-v0/bc/s0"]
        assert (running / "metrics.jsonl").read_text().count("step") == 2
        assert not (running / "error.txt").exists()
    assert export_results(archive, grid)["copied"] == ["pendulum-medium-v0/bc/s0"]
    assert (running / "error.txt").exists()


def test_grid_device_reaches_every_cell(tmp_path: Path) -> None:
    """``--device`` goes into every cell's training config and command and into Ray's request;
    a manifest written before the option existed reads as a CPU grid, and a grid may be finished
    on another device (it is not part of the protocol)."""
    spec = GridSpec(["bc"], ["pendulum-medium-v0"], [0], device="cuda:1", gpus_per_cell=0.25)
    cell = grid_cells(spec)[0]
    assert "--device cuda:1" in train_command(spec, cell, tmp_path)
    assert "--device cuda:1" in grid_command(spec, tmp_path)
    assert ray_resources(spec) == {"num_cpus": 1, "num_gpus": 0.25}
    cpu = GridSpec(["bc"], ["pendulum-medium-v0"], [0])
    assert "--device" not in train_command(cpu, cell, tmp_path)  # CPU commands read as before
    assert ray_resources(cpu) == {"num_cpus": 1, "num_gpus": 0}

    old = cpu.to_dict()
    del old["device"], old["gpus_per_cell"]
    (tmp_path / "grid.json").write_text(json.dumps(old))
    assert load_grid(tmp_path).device == "cpu"
    result = run_grid(spec, tmp_path, dry_run=True, log=lambda _: None)
    assert result["cells"] == 1
    assert load_grid(tmp_path).device == "cuda:1"


def test_task_defaults_reach_each_cell(tmp_path: Path) -> None:
    """``--task-defaults``: each cell gets its algorithm's per-task settings for its dataset
    (written out in its config and command), ``algo_config`` still overrides, and a dataset
    without a row (Pendulum) or an algorithm without a table (BC) keeps the defaults."""
    from offrl.bench.grid import _cell_config, cell_algo_config

    spec = GridSpec(
        ["mopo", "rebrac", "bc"],
        ["hopper-medium-v0", "hopper-medium-replay-v0", "pendulum-medium-v0"],
        [0],
        task_defaults=["mopo", "rebrac", "bc"],
        algo_config={"mopo": {"penalty_coef": 4.0}},
    )
    cells = {(c.algo, c.dataset): c for c in grid_cells(spec)}
    hopper_mopo = cell_algo_config(spec, cells["mopo", "hopper-medium-v0"])
    assert hopper_mopo == {"rollout_length": 5, "penalty_coef": 4.0}  # h from the table
    rebrac = cell_algo_config(spec, cells["rebrac", "hopper-medium-replay-v0"])
    assert rebrac["actor_bc_coef"] == 0.05 and rebrac["critic_bc_coef"] == 0.5
    assert cell_algo_config(spec, cells["rebrac", "hopper-medium-v0"]) == {}  # its defaults
    assert cell_algo_config(spec, cells["mopo", "pendulum-medium-v0"]) == {"penalty_coef": 4.0}
    assert cell_algo_config(spec, cells["bc", "hopper-medium-v0"]) == {}
    command = train_command(spec, cells["mopo", "hopper-medium-v0"], tmp_path)
    assert "--set rollout_length=5" in command and "--set penalty_coef=4.0" in command
    config = _cell_config(spec, cells["mopo", "hopper-medium-v0"], tmp_path)
    assert config["algo_config"] == hopper_mopo
    assert "--task-defaults mopo,rebrac,bc" in grid_command(spec, tmp_path)
    plain = GridSpec(["mopo"], ["hopper-medium-v0"], [0])
    assert cell_algo_config(plain, grid_cells(plain)[0]) == {}
    # An existing grid of other algorithms takes them with their tables; an algorithm whose
    # cells exist keeps its entry.
    run_grid(GridSpec(["td3bc"], ["pendulum-medium-v0"], [0]), tmp_path / "g", dry_run=True,
             log=lambda _: None)  # fmt: skip
    run_grid(spec, tmp_path / "g", dry_run=True, log=lambda _: None)
    assert load_grid(tmp_path / "g").task_defaults == ["mopo", "rebrac", "bc"]
    with pytest.raises(ValueError, match="task_defaults of 'mopo'"):
        run_grid(plain, tmp_path / "g", dry_run=True, log=lambda _: None)


@needs_cuda
def test_grid_on_the_gpu(tmp_path: Path) -> None:
    """A tiny grid trained on the GPU by the local executor: every cell finishes there."""
    spec = GridSpec(["bc", "td3bc"], ["pendulum-medium-v0"], [0], device="cuda", **TINY)  # type: ignore[arg-type]
    result = run_grid(spec, tmp_path, workers=2, log=lambda _: None)
    assert result["failed"] == [] and result["ran"] == 2
    for cell in grid_cells(spec):
        run = cell.run_dir(tmp_path)
        assert json.loads((run / "config.json").read_text())["train"]["device"] == "cuda"
        assert np.isfinite(json.loads((run / "final.json").read_text())["return_mean"])
