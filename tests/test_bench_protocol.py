"""The evaluation protocol of ``offrl bench report``: last / best evaluations, the final
evaluation over many episodes (and its resume after a kill), and Unifloral's UCB policy
selection, on synthetic results with known answers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offrl.bench.grid import (
    GridSpec,
    _cell_config,
    grid_cells,
    grid_command,
    run_grid,
    train_command,
)
from offrl.bench.report import best_evaluation, read_run, two_stage_bootstrap_ci, write_report
from offrl.bench.selection import SelectionConfig, ucb_selection
from offrl.cli import build_parser
from offrl.config import from_namespace
from offrl.data import DatasetError
from offrl.errors import ConfigError
from offrl.train import TrainConfig, load_algorithm, read_metrics, train
from offrl.train.evaluation import evaluate

# ----------------------------------------------------------------- last and best evaluation


def test_best_evaluation_is_the_earliest_maximum_of_the_curve() -> None:
    curve = [(5, 1.0), (10, 3.0), (15, 3.0), (20, 2.0)]
    assert best_evaluation(curve, last=2.0, last_step=20) == (3.0, 10)
    assert best_evaluation([(10, -7.0), (5, -9.0)]) == (-7.0, 10)  # order of records irrelevant
    assert best_evaluation([], last=4.0, last_step=30) == (4.0, 30)  # no curve: the last one
    assert best_evaluation([]) == (None, None)


def _write_run(
    run: Path,
    curve: list[tuple[int, float]],
    final_eval: list[float] | None,
    normalised: bool = True,
) -> None:
    """A finished run directory as ``offrl train`` writes it (only the fields the report reads)."""
    run.mkdir(parents=True)
    key = "eval/normalized_score" if normalised else "eval/return_mean"
    records = [{"step": s, "kind": "eval", key: v} for s, v in curve]
    records.insert(1, {"step": 3, "kind": "train", "loss": 1.0})  # not an evaluation
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    last = curve[-1][1]
    final: dict[str, Any] = {
        "status": "completed",
        "steps": curve[-1][0],
        "normalized_score": last if normalised else None,
        "return_mean": last if not normalised else -1.0,
        "final_eval": None,
    }
    if final_eval is not None:
        final["final_eval"] = {
            "episodes": len(final_eval),
            "returns": final_eval if not normalised else [-1.0] * len(final_eval),
            "normalized": final_eval if normalised else None,
        }
    (run / "final.json").write_text(json.dumps(final))


def test_read_run_last_best_and_final_episodes(tmp_path: Path) -> None:
    _write_run(tmp_path / "n", [(5, 10.0), (10, 30.0), (15, 20.0)], [1.0, 2.0, 6.0])
    r = read_run(tmp_path / "n", "bc", "d", 0)
    assert r is not None and r.normalised
    assert (r.last, r.score, r.best, r.best_step) == (20.0, 20.0, 30.0, 10)
    assert r.final_eval == [1.0, 2.0, 6.0]
    # Without reference scores: raw returns everywhere, the final evaluation's returns too.
    _write_run(tmp_path / "raw", [(5, -300.0), (10, -200.0)], [-210.0, -190.0], normalised=False)
    r = read_run(tmp_path / "raw", "bc", "d", 0)
    assert r is not None and not r.normalised
    assert (r.last, r.best, r.best_step, r.final_eval) == (-200.0, -200.0, 10, [-210.0, -190.0])
    # A run from before final evaluations existed: no final_eval at all.
    _write_run(tmp_path / "old", [(5, 1.0)], None)
    (tmp_path / "old" / "final.json").write_text(json.dumps({"normalized_score": 1.0}))
    r = read_run(tmp_path / "old", "bc", "d", 0)
    assert r is not None and r.final_eval is None and (r.best, r.best_step) == (1.0, 5)


def test_two_stage_bootstrap_ci() -> None:
    assert two_stage_bootstrap_ci([[5.0, 5.0], [5.0]]) == (5.0, 5.0)  # no spread anywhere
    lo, hi = two_stage_bootstrap_ci([[0.0, 2.0], [10.0, 12.0, 14.0]], reps=4000)
    # Resampled means lie between the lowest and highest possible mean over seeds (0 and 14)
    # and, with two distinct seeds, spread well beyond either seed's own episode noise.
    assert 0.0 <= lo < 6.5 < hi <= 14.0 and hi - lo > 5.0
    # One seed: the ordinary bootstrap over its episodes (mean 1; means of two draws of {0, 2}).
    lo, hi = two_stage_bootstrap_ci([[0.0, 2.0]], reps=4000)
    assert (lo, hi) == (0.0, 2.0)


# ------------------------------------------------------------------------ UCB selection


def test_single_episode_budget_by_hand() -> None:
    """Two policies, A's episodes {0, 0, 10} (mean 10/3), B's {2, 2} (mean 2).

    n = 1: the first pull goes to a random arm, and the pick is that arm: (10/3 + 2) / 2.
    n = 2: the other arm is pulled; A is picked iff its draw was 10 (probability 1/3), else B:
    1/3 * 10/3 + 2/3 * 2 = 22/9.
    """
    result = ucb_selection([[0.0, 0.0, 10.0], [2.0, 2.0]], SelectionConfig(repeats=20_000))
    assert len(result.budgets) == 3  # default budget: the most episodes of any policy
    assert result.policy_means == pytest.approx([10 / 3, 2.0])
    mean, lo, hi = result.at(1)
    assert mean == pytest.approx(8 / 3, abs=0.03) and lo < mean < hi  # 6 standard errors
    mean, lo, hi = result.at(2)
    assert mean == pytest.approx(22 / 9, abs=0.03) and lo < mean < hi
    # Each run's pick is one of the two policies' true means.
    assert set(np.unique(result.picked)) <= {10 / 3, 2.0}


def test_equal_policies_give_their_mean_at_every_budget() -> None:
    # Same mean, different spread: whatever the bandit picks scores 2.
    result = ucb_selection([[2.0, 2.0], [0.0, 4.0], [1.0, 3.0]], SelectionConfig(budget=30))
    assert np.all(result.mean == 2.0)
    assert np.all(result.ci_low == 2.0) and np.all(result.ci_high == 2.0)


def test_clearly_best_policy_is_found_as_the_budget_grows() -> None:
    rng = np.random.default_rng(0)
    scores = [rng.normal(m, 5.0, size=100) for m in (0.0, 5.0, 10.0, 20.0)]
    result = ucb_selection(scores)
    best, average = result.policy_means.max(), result.policy_means.mean()
    # One episode: a random policy, so the mean over policies.
    assert result.at(1)[0] == pytest.approx(average, abs=1.0)
    # The gap to the best policy shrinks with the budget, to almost nothing at 100 episodes.
    gaps = [best - result.at(n)[0] for n in (1, 2, 4, 10, 100)]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert 0.0 <= gaps[-1] < 0.02 * (best - average)
    _, lo, hi = result.at(100)
    assert lo <= result.at(100)[0] <= hi <= best


def test_subsample_of_one_policy_is_a_random_pick() -> None:
    scores = [[0.0], [10.0], [20.0], [30.0]]
    result = ucb_selection(scores, SelectionConfig(subsample=1, budget=5, repeats=8000))
    assert np.all(result.picked == result.picked[:, :1])  # one arm: the pick never changes
    assert result.at(5)[0] == pytest.approx(15.0, abs=0.5)  # uniform over the four policies
    # All four offered: after one pull of each (no noise) the best is always found.
    full = ucb_selection(scores, SelectionConfig(budget=5))
    assert full.at(4) == (30.0, 30.0, 30.0)


def test_selection_is_seeded_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    scores = [rng.normal(m, 8.0, size=20) for m in (0.0, 3.0, 6.0)]
    a = ucb_selection(scores, SelectionConfig(seed=7, repeats=200))
    b = ucb_selection(scores, SelectionConfig(seed=7, repeats=200))
    c = ucb_selection(scores, SelectionConfig(seed=8, repeats=200))
    for name in ("mean", "ci_low", "ci_high", "picked"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.picked, c.picked)


def test_selection_rejects_bad_input() -> None:
    with pytest.raises(DatasetError, match="no policies"):
        ucb_selection([])
    with pytest.raises(DatasetError, match=r"scores\[1\]: the policy has no episode"):
        ucb_selection([[1.0], []])
    with pytest.raises(DatasetError, match=r"scores\[0\]\[1\]: non-finite"):
        ucb_selection([[1.0, float("nan")]])
    with pytest.raises(ConfigError, match="option repeats"):
        SelectionConfig(repeats=0)
    with pytest.raises(ConfigError, match="option confidence"):
        SelectionConfig(confidence=1.0)
    with pytest.raises(ConfigError, match="option ucb_alpha"):
        SelectionConfig(ucb_alpha=-1.0)
    with pytest.raises(ConfigError, match="option budget"):
        SelectionConfig(budget=0)
    with pytest.raises(ValueError, match="outside 1..3"):
        ucb_selection([[1.0, 2.0, 3.0]]).at(4)


# ------------------------------------------------------------- the report on a synthetic grid


def _synthetic_grid(out: Path) -> GridSpec:
    """2 algorithms x 2 identical datasets x 3 seeds, every number chosen by hand.

    ``a``: evaluations 50 + s at step 5 and 40 + s at step 10 (last 40 + s, best 50 + s at 5);
    final-evaluation episodes 10 s + {0, 2, 4, 6} (means 3, 13, 23: non-overlapping).
    ``b``: evaluations 10 then 20 + s (best = last); final episodes all 25.
    """
    spec = GridSpec(["a", "b"], ["d1", "d2"], [0, 1, 2], steps=10, eval_every=5, eval_episodes=2)
    spec.final_eval_episodes = 4
    out.mkdir(parents=True)
    (out / "grid.json").write_text(json.dumps(spec.to_dict()))
    for cell in grid_cells(spec):
        s = cell.seed
        if cell.algo == "a":
            curve = [(5, 50.0 + s), (10, 40.0 + s)]
            episodes = [10.0 * s + x for x in (0.0, 2.0, 4.0, 6.0)]
        else:
            curve = [(5, 10.0), (10, 20.0 + s)]
            episodes = [25.0] * 4
        _write_run(cell.run_dir(out), curve, episodes)
    return spec


def test_report_last_best_final_and_selection_columns(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    _synthetic_grid(out)
    selection = SelectionConfig(shown=(1, 2, 4, 50), repeats=3000)
    report = write_report(out, reps=300, selection=selection)
    md = (out / "REPORT.md").read_text()
    sd = f"{np.std([40, 41, 42]):.1f}"

    # Last and best, mean ± std over seeds, the best's steps per seed; final evaluation.
    assert "## Last, best and final evaluation" in md
    row_a = f"| d1 | a | 41.0 ± {sd} | 51.0 ± {sd} | 5, 5, 5 | 13.0 ["
    assert row_a in md
    assert f"| d2 | b | 21.0 ± {sd} | 21.0 ± {sd} | 10, 10, 10 | 25.0 [25.0, 25.0] |" in md
    (ev,) = [r for r in report["evaluation"] if (r["dataset"], r["algo"]) == ("d1", "a")]
    assert ev["last"] == [40.0, 41.0, 42.0] and ev["best"] == [50.0, 51.0, 52.0]
    assert ev["best_step"] == [5, 5, 5]
    assert ev["final_eval"]["means"] == [3.0, 13.0, 23.0] and ev["final_eval"]["mean"] == 13.0
    lo, hi = ev["final_eval"]["ci"]
    assert 0.0 <= lo < 13.0 < hi <= 26.0

    # IQM over 2 datasets x 3 seeds (drop the lowest and highest sixth... of 6 runs, one each).
    agg = report["aggregate_protocol"]
    assert agg["last"]["a"]["iqm"] == pytest.approx(41.0)  # mean(40, 41, 41, 42)
    assert agg["best"]["a"]["iqm"] == pytest.approx(51.0)
    assert agg["final_eval"]["a"]["iqm"] == pytest.approx(13.0)  # mean(3, 13, 13, 23)
    assert agg["final_eval"]["b"]["iqm_ci"] == [25.0, 25.0]
    assert agg["last"]["a"]["iqm"] == report["aggregate"]["a"]["iqm"]  # last = the table's score
    assert "| algorithm | last IQM [95 % CI] | best IQM [95 % CI] | final evaluation IQM" in md
    assert "| a | 41.0 [" in md and "| b | 21.0 [" in md

    # Selection among a's seeds: one episode picks a random seed (13 on average); two pick the
    # better of two random seeds ((13 + 23 + 23) / 3); from three on, always the best (23).
    rows = {(r["dataset"], r["algo"]): r for r in report["selection"]["rows"]}
    a = rows[("d1", "a")]
    assert a["seeds"] == [0, 1, 2] and a["budgets"] == [1, 2, 3, 4]
    assert a["policy_means"] == [3.0, 13.0, 23.0]
    assert a["mean"][0] == pytest.approx(13.0, abs=0.5)
    assert a["mean"][1] == pytest.approx(59 / 3, abs=0.4)
    assert a["mean"][2:] == [23.0, 23.0] and a["ci_low"][3] == a["ci_high"][3] == 23.0
    assert rows[("d2", "b")]["mean"] == [25.0] * 4
    assert "## Policy selection under a limited online budget" in md
    assert "| dataset | algorithm | seeds | n = 1 | n = 2 | n = 4 | best seed | mean seed |" in md
    assert "| d2 | b | 3 | 25.0 [25.0, 25.0] | 25.0 [25.0, 25.0] | 25.0 [25.0, 25.0] | 25.0 |" in md
    assert "| 23.0 [23.0, 23.0] | 23.0 | 13.0 |" in md  # a's row ends: n = 4, best, mean
    assert (out / "selection.png").exists()
    assert report["selection"]["config"]["repeats"] == 3000
    # report.json's cells carry the final evaluation's mean, not its episodes.
    cells = {(c["algo"], c["dataset"], c["seed"]): c for c in report["cells"]}
    cell = cells[("a", "d1", 2)]
    assert (cell["best"], cell["best_step"], cell["final_eval_mean"]) == (52.0, 5, 23.0)
    assert cell["final_eval_episodes"] == 4 and "final_eval" not in cell
    # The same inputs and seeds give the same report.
    again = write_report(out, reps=300, selection=selection, to=tmp_path / "again")
    assert again["selection"] == report["selection"] and again["evaluation"] == report["evaluation"]


def test_report_without_final_evaluations_has_no_selection(tmp_path: Path) -> None:
    """A grid from before final evaluations: last and best only, and no selection section."""
    out = tmp_path / "grid"
    spec = _synthetic_grid(out)
    for cell in grid_cells(spec):
        path = cell.run_dir(out) / "final.json"
        final = json.loads(path.read_text())
        final.pop("final_eval")
        path.write_text(json.dumps(final))
    report = write_report(out, reps=100)
    md = (out / "REPORT.md").read_text()
    assert f"| d1 | a | 41.0 ± {np.std([40, 41, 42]):.1f} | 51.0 ±" in md
    assert "| 5, 5, 5 | – |" in md
    assert report["selection"]["rows"] == [] and "Policy selection" not in md
    assert set(report["aggregate_protocol"]) == {"last", "best"}


# ----------------------------------------------- the final evaluation in training and the grid


def test_final_evaluation_keeps_every_episode(tmp_path: Path) -> None:
    cfg = TrainConfig(
        algo="bc",
        steps=20,
        eval_every=0,
        eval_episodes=2,
        final_eval_episodes=5,
        out=str(tmp_path / "run"),
        progress=False,
        threads=1,
    )
    final = train(cfg)
    fe = final["final_eval"]
    assert json.loads((tmp_path / "run" / "final.json").read_text())["final_eval"] == fe
    assert fe["episodes"] == 5 and fe["seed"] == cfg.eval_seed
    assert len(fe["returns"]) == len(fe["normalized"]) == 5
    assert fe["return_mean"] == pytest.approx(np.mean(fe["returns"]))
    assert fe["normalized_mean"] == pytest.approx(np.mean(fe["normalized"]))
    # The same episodes as evaluating the final checkpoint with the same seeds.
    policy = load_algorithm(tmp_path / "run" / "checkpoints" / "latest.pt")
    again = evaluate(policy, "Pendulum-v1", 5, seed=cfg.eval_seed)
    assert fe["returns"] == again.returns and fe["normalized"] == again.normalized
    # Logged once, as one record of its summary.
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    (logged,) = [r for r in records if r["kind"] == "final_eval"]
    assert logged["step"] == 20 and logged["final_eval/return_mean"] == fe["return_mean"]
    # 0 skips it; a negative count is refused.
    off = train(dataclasses.replace(cfg, out=str(tmp_path / "off"), final_eval_episodes=0))
    assert off["final_eval"] is None
    with pytest.raises(ConfigError, match="final_eval_episodes"):
        TrainConfig(final_eval_episodes=-1)


def test_kill_during_the_final_evaluation_resumes_and_redoes_it(tmp_path: Path) -> None:
    """A run killed in its final evaluation (after the last checkpoint and evaluation) leaves
    no final.json; ``--resume`` does the final evaluation again, logs it once, and gets the
    episodes an evaluation of the final checkpoint gets."""
    run = tmp_path / "run"
    episodes = 120  # a second or two of Pendulum: time to be killed in the middle
    args = ["--algo", "bc", "--dataset", "pendulum-medium-v0", "--steps", "40"]
    args += ["--eval-every", "20", "--eval-episodes", "1", "--checkpoint-every", "20"]
    args += ["--final-eval-episodes", str(episodes), "--threads", "1", "--no-progress"]
    args += ["--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "offrl.cli", "train", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:  # the last evaluation is logged
            if any(
                r["kind"] == "eval" and r["step"] == 40 for r in read_metrics(run / "metrics.jsonl")
            ):
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "final.json").exists(), "the run ended before the kill"
    assert (run / "checkpoints" / "step_40.pt").exists()

    namespace = build_parser().parse_args(["train", *args])
    cfg = from_namespace(TrainConfig, namespace, algo_config={})
    final = train(cfg, resume=True)
    fe = final["final_eval"]
    assert fe["episodes"] == episodes and len(fe["returns"]) == episodes
    policy = load_algorithm(run / "checkpoints" / "latest.pt")
    assert fe["returns"] == evaluate(policy, "Pendulum-v1", episodes, seed=10_000).returns
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "eval"] == [20, 40]
    assert [r["step"] for r in records if r["kind"] == "final_eval"] == [40]


def test_grid_passes_the_final_evaluation_through(tmp_path: Path) -> None:
    args = ["bench", "run", "--algos", "bc", "--datasets", "pendulum-medium-v0", "--seeds", "0,1"]
    args += ["--steps", "20", "--eval-every", "10", "--eval-episodes", "1"]
    args += ["--final-eval-episodes", "6", "--out", str(tmp_path / "grid")]
    namespace = build_parser().parse_args(args)
    spec = from_namespace(GridSpec, namespace, algo_config={}, imports=[])
    assert spec.final_eval_episodes == 6
    cell = grid_cells(spec)[0]
    assert "--final-eval-episodes 6" in train_command(spec, cell, tmp_path / "grid")
    assert "--final-eval-episodes 6" in grid_command(spec, tmp_path / "grid")
    assert _cell_config(spec, cell, tmp_path / "grid")["final_eval_episodes"] == 6
    with pytest.raises(ConfigError, match="final_eval_episodes"):
        GridSpec(["bc"], ["d"], final_eval_episodes=-2)

    # The real thing: two cells, then the report's evaluation and selection of their seeds.
    result = run_grid(spec, tmp_path / "grid", workers=1, log=lambda _: None)
    assert result["failed"] == [] and result["ran"] == 2
    for c in grid_cells(spec):
        saved = json.loads((c.run_dir(tmp_path / "grid") / "config.json").read_text())
        assert saved["train"]["final_eval_episodes"] == 6
    with pytest.raises(ValueError, match="final_eval_episodes"):  # part of the protocol
        run_grid(GridSpec(["bc"], ["pendulum-medium-v0"], [0], steps=20, eval_every=10,
                          eval_episodes=1), tmp_path / "grid", dry_run=True)  # fmt: skip
    report = write_report(tmp_path / "grid", reps=100, selection=SelectionConfig(repeats=100))
    (row,) = report["selection"]["rows"]
    assert row["seeds"] == [0, 1] and row["episodes"] == [6, 6] and len(row["mean"]) == 6
    (ev,) = report["evaluation"]
    assert len(ev["final_eval"]["means"]) == 2
    assert min(row["policy_means"]) <= row["mean"][0] <= max(row["policy_means"])
