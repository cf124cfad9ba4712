"""``offrl bench report``: a grid's table, learning curves and aggregate statistics.

* ``REPORT.md`` -- the seeds' table (datasets x algorithms, final normalised score mean ± std
  over seeds), the protocol (budget, evaluation, machine), the command that reproduces every
  cell, failed and missing cells, and the aggregate statistics;
* ``curves_<dataset>.png`` -- mean ± std over seeds of the evaluation curve, per algorithm;
* ``aggregate.png`` -- interquartile mean (IQM) with stratified-bootstrap 95 % confidence
  intervals, and performance profiles (Agarwal et al., 2021, "Deep RL at the Edge of the
  Statistical Precipice"), computed with the maintained ``rliable`` library;
* the evaluation protocol ahead of those statistics: per dataset and algorithm the **last**
  evaluation (at the end of training) and the **best** one (each seed's maximum over its
  evaluations of the mean score, and the step it came at), as CORL reports both (Tarasov et
  al., 2022; ``results/get_offline_tables_and_plots.py``: ``get_last_scores`` /
  ``get_max_scores``), and the **final evaluation** of the last policy over many episodes
  (``final_eval_episodes``, 100 by default) with a bootstrap CI over seeds; the IQM / CI of all
  three over datasets and seeds;
* ``selection.png`` and its table -- policy selection under a limited online budget: the
  expected score of the seed a UCB bandit picks after ``n`` online episodes, drawn from the
  final evaluations, with bootstrap CIs (Unifloral's protocol, :mod:`offrl.bench.selection`);
* ``report.json`` -- every number above.

Scores are D4RL-normalised where the environment has reference returns, else raw returns (the
table says which).

External runs: any ``OUT/<dataset>/<name>/s<seed>/final.json`` whose ``<name>`` is not one of
the grid's algorithms (``benchmarks/d3rlpy/grid.py`` writes ``d3rlpy-td3plusbc`` etc. there) is
read the same way and shown as an extra column of the table and curve in the figures, listed
under ``report.json["external"]`` with the commands from its ``command.txt``, and enters the
aggregate statistics only when it is complete (every dataset x every grid seed), the rule the
grid's own algorithms follow. Where both sides exist, an "offrl vs d3rlpy" table pairs offrl's
``td3bc`` / ``iql`` / ``cql`` with d3rlpy's ``td3plusbc`` / ``iql`` / ``cql``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrl.bench.grid import (
    Cell,
    GridSpec,
    grid_cells,
    grid_command,
    load_grid,
    run_dirs,
    train_command,
)
from offrl.bench.selection import SelectionConfig, SelectionResult, ucb_selection
from offrl.io import atomic_write_bytes
from offrl.scores import normalized_score
from offrl.train.loggers import read_metrics

__all__ = ["CellResult", "collect", "collect_external", "read_run", "aggregate", "write_report"]

D3RLPY_PAIRS = {"td3bc": "d3rlpy-td3plusbc", "iql": "d3rlpy-iql", "cql": "d3rlpy-cql"}
"""offrl algorithm -> the external column holding d3rlpy's counterpart."""
TIANSHOU_PAIRS = {
    "discrete_bcq": "tianshou-bcq",
    "discrete_cql": "tianshou-cql",
    "discrete_crr": "tianshou-crr",
    "discrete_crr_cql": "tianshou-crr_cql",
}
"""offrl algorithm -> the external column holding Tianshou's counterpart
(``benchmarks/tianshou/grid.py``)."""
PEERS = {"d3rlpy": D3RLPY_PAIRS, "tianshou": TIANSHOU_PAIRS}
"""The peer libraries whose columns the report pairs with offrl's algorithms."""


@dataclass
class CellResult:
    """The outcome of one cell."""

    algo: str
    dataset: str
    seed: int
    status: str
    """``done``, ``failed`` or ``missing``."""
    score: float | None = None
    """The last evaluation's normalised score (or return where no reference exists): the
    evaluation at the end of training, ``final.json``'s ``normalized_score``."""
    normalised: bool = True
    """Whether the scores are D4RL-normalised (else raw returns)."""
    curve: list[tuple[int, float]] | None = None
    """``(step, score)`` of every evaluation during training."""
    error: str | None = None
    """Why a failed cell failed."""
    best: float | None = None
    """The best evaluation: the maximum over ``curve`` (and ``score``) of the mean score."""
    best_step: int | None = None
    """The step of the best evaluation (the earliest, on a tie)."""
    final_eval: list[float] | None = None
    """Every episode's score in the final evaluation (``final.json``'s ``final_eval``), or
    ``None`` for a run without one."""
    behaviour: float | None = None
    """The data's mean episode return (``final.json``'s ``behaviour_return_mean``), in the
    scores' unit (normalised where they are)."""
    finetune: dict[str, float | None] | None = None
    """An offline-to-online cell's ``offline_score``, ``online_score``, ``initial_drop`` and
    ``regret`` (:mod:`offrl.train.finetune`); ``None`` for an offline cell."""
    updates_per_s: float | None = None
    """The median over the run's ``train`` rows of their ``updates_per_s`` (gradient updates
    per second of training, evaluations excluded), or ``None`` where the rows lack it."""

    @property
    def last(self) -> float | None:
        """The last evaluation (``score``)."""
        return self.score


def read_run(run: Path, algo: str, dataset: str, seed: int) -> CellResult | None:
    """The result of one finished run directory (``final.json`` + ``metrics.jsonl``), or
    ``None`` when it has no ``final.json``."""
    final_path = run / "final.json"
    if not final_path.exists():
        return None
    final = json.loads(final_path.read_text())
    if final.get("status") == "diverged":  # a result too: the same seed diverges again
        diag = final.get("diagnosis") or {}
        why = f"diverged at step {diag.get('step')}: {diag.get('quantity')} became non-finite"
        return CellResult(algo, dataset, seed, "failed", error=why)
    normalised = final.get("normalized_score") is not None
    key = "eval/normalized_score" if normalised else "eval/return_mean"
    rows = read_metrics(run / "metrics.jsonl")
    evals = [r for r in rows if r["kind"] == "eval"]
    rates = [float(r["updates_per_s"]) for r in rows if "updates_per_s" in r]
    score = final["normalized_score"] if normalised else final["return_mean"]
    curve = [(int(r["step"]), float(r[key])) for r in evals if r.get(key) is not None]
    best, best_step = best_evaluation(curve, score, final.get("steps"))
    episodes = (final.get("final_eval") or {}).get("normalized" if normalised else "returns")
    behaviour = final.get("behaviour_return_mean")
    if behaviour is not None and normalised and final.get("env_id"):
        behaviour = normalized_score(str(final["env_id"]), float(behaviour))
    return CellResult(
        algo,
        dataset,
        seed,
        "done",
        score,
        normalised,
        curve,
        best=best,
        best_step=best_step,
        final_eval=[float(x) for x in episodes] if episodes else None,
        behaviour=float(behaviour) if behaviour is not None else None,
        finetune={k: final.get(k) for k in FINETUNE_KEYS} if "offline_score" in final else None,
        updates_per_s=statistics.median(rates) if rates else None,
    )


FINETUNE_KEYS = ("offline_score", "online_score", "initial_drop", "regret")
"""What the fine-tuning table reports of each offline-to-online cell."""


def _finetune_lines(spec: GridSpec, by_cell: dict[tuple[str, str], list[CellResult]]) -> list[str]:
    """The offline-to-online table in CORL's shape (empty for an offline grid)."""
    if not spec.online_steps:
        return []
    lines = [
        "",
        "## Offline-to-online",
        "",
        f"Score after {spec.steps:,d} offline updates → after {spec.online_steps:,d} online "
        "environment steps; the initial drop (the offline score minus the worst evaluation in "
        "the first online steps) and CORL's regret (mean of 1 - score / 100 over the online "
        "episodes); mean ± std over seeds.",
        "",
        "| dataset | algorithm | offline → online | initial drop | regret |",
        "|---|---|---|---|---|",
    ]
    for ds in spec.datasets:
        for algo in spec.algos:
            runs = [r.finetune for r in by_cell.get((ds, algo), []) if r.finetune]
            if not runs:
                continue
            col = {k: [v for r in runs if (v := r.get(k)) is not None] for k in FINETUNE_KEYS}
            lines.append(
                f"| {ds} | {algo} | {_fmt(col['offline_score'])} → {_fmt(col['online_score'])} "
                f"| {_fmt(col['initial_drop'])} | {_fmt(col['regret'], 2)} |"
            )
    return lines


def best_evaluation(
    curve: list[tuple[int, float]], last: float | None = None, last_step: int | None = None
) -> tuple[float | None, int | None]:
    """``(score, step)`` of the best of the evaluations ``curve`` (``(step, mean score)``
    pairs), the earliest step on a tie: CORL's "best" score of one seed (``get_max_scores``: the
    maximum over evaluations of the mean over episodes). Without a curve, the last evaluation
    (``last`` at ``last_step``); ``(None, None)`` without either."""
    if not curve:
        return (None, None) if last is None else (float(last), last_step)
    step, value = max(curve, key=lambda p: (p[1], -p[0]))
    return float(value), int(step)


def collect(out: str | Path, spec: GridSpec | None = None) -> list[CellResult]:
    """Read every cell of the grid in ``out``."""
    out = Path(out)
    spec = spec or load_grid(out)
    status = json.loads((out / "status.json").read_text()) if (out / "status.json").exists() else {}
    results = []
    for cell in grid_cells(spec):
        result = read_run(cell.run_dir(out), cell.algo, cell.dataset, cell.seed)
        if result is None:
            info = status.get(cell.key, {})
            failed = info.get("status") == "failed"
            result = CellResult(
                cell.algo,
                cell.dataset,
                cell.seed,
                "failed" if failed else "missing",
                error=info.get("error"),
            )
        results.append(result)
    return results


def collect_external(out: str | Path, spec: GridSpec | None = None) -> list[CellResult]:
    """Runs in ``OUT/<dataset>/<name>/s<seed>/`` whose ``<name>`` is not a grid algorithm.

    A run with ``final.json`` is ``done``; one with only ``error.txt`` is ``failed`` (the error
    file's last line is the error); other directories are ignored.
    """
    out = Path(out)
    spec = spec or load_grid(out)
    results = []
    for cell, run in run_dirs(out, spec):
        if cell.algo in spec.algos:
            continue
        result = read_run(run, cell.algo, cell.dataset, cell.seed)
        if result is None and (run / "error.txt").exists():
            lines = (run / "error.txt").read_text().strip().splitlines()
            result = CellResult(
                cell.algo, cell.dataset, cell.seed, "failed", error=lines[-1] if lines else None
            )
        if result is not None:
            results.append(result)
    return results


def aggregate(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """IQM and mean with stratified-bootstrap 95 % CIs (rliable), per algorithm.

    ``scores[algo]`` is ``[runs, tasks]`` (seeds x datasets). Returns, per algorithm,
    ``{"iqm": x, "iqm_ci": [lo, hi], "mean": x, "mean_ci": [lo, hi]}``.
    """
    from rliable import library as rly
    from rliable import metrics

    def fn(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    point, ci = rly.get_interval_estimates(scores, fn, reps=reps)
    return {
        algo: {
            "iqm": float(point[algo][0]),
            "iqm_ci": [float(ci[algo][0, 0]), float(ci[algo][1, 0])],
            "mean": float(point[algo][1]),
            "mean_ci": [float(ci[algo][0, 1]), float(ci[algo][1, 1])],
        }
        for algo in scores
    }


def performance_profile(scores: dict[str, np.ndarray], taus: np.ndarray) -> dict[str, list[float]]:
    """Fraction of runs with score > tau, per algorithm: rliable's performance profile
    (``create_performance_profile``'s point estimate, ``run_score_deviation``: the mean of
    ``scores > tau`` over every run and task), computed directly -- rliable would also
    bootstrap 2000 confidence bands that the figure does not draw (~3 s per algorithm)."""
    taus = np.asarray(taus, dtype=float)
    return {
        algo: [float(v) for v in (np.asarray(x)[..., None] > taus).reshape(-1, taus.size).mean(0)]
        for algo, x in scores.items()
    }


def _fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def write_report(
    out: str | Path,
    reps: int = 2000,
    machine: str | None = None,
    notes: str | Path | None = None,
    to: str | Path | None = None,
    selection: SelectionConfig | None = None,
) -> dict[str, Any]:
    """Write ``REPORT.md``, ``report.json`` and the figures for the grid in ``out``.

    ``reps``: bootstrap resamples of every confidence interval. ``notes``: a Markdown file whose
    text goes into the report under "Notes", after the tables (the place to explain a result,
    e.g. why one library is behind another). ``to``: the directory to write them in (created if
    missing), so that a report of a committed copy of a grid (``offrl bench export``) leaves the
    copy as it is; by default, ``out`` itself. ``selection``: the policy-selection protocol
    (:class:`~offrl.bench.selection.SelectionConfig`; default: Unifloral's).
    """
    out = Path(out)
    dest = Path(to) if to is not None else out
    dest.mkdir(parents=True, exist_ok=True)
    notes_text = Path(notes).read_text().strip() if notes is not None else ""
    # A notes file that opens with its own "## Notes" heading gets no second one.
    head, _, rest = notes_text.partition("\n")
    if head.strip() == "## Notes":
        notes_text = rest.strip()
    spec = load_grid(out)
    results = collect(out, spec)
    external = collect_external(out, spec)
    names = list(dict.fromkeys(r.algo for r in external))
    columns = [*spec.algos, *names]
    everything = [*results, *external]
    done = [r for r in everything if r.status == "done"]
    by_cell: dict[tuple[str, str], list[CellResult]] = {}
    for r in done:
        by_cell.setdefault((r.dataset, r.algo), []).append(r)

    normalised = all(r.normalised for r in done) if done else True
    unit = "normalised score" if normalised else "return"
    budget = f"{spec.steps:,d} gradient steps"
    if spec.online_steps:
        budget = f"{spec.steps:,d} offline updates and {spec.online_steps:,d} online steps"
    lines = [
        "# Benchmark report",
        "",
        f"Final {unit} after {budget}, mean ± std over seeds "
        f"{spec.seeds} ({spec.eval_episodes} evaluation episodes each; every algorithm at its "
        "defaults unless listed below).",
    ]
    if names:
        lines += [
            "",
            f"External runs (not trained by offrl; commands below): {', '.join(names)}.",
        ]
    if len(done) < len(everything):
        lines += [
            "",
            f"**Partial results:** {len(done)} of {len(everything)} cells have finished; the "
            'others are listed under "Cells without a result". Re-running the grid\'s command '
            "runs only those.",
        ]
    lines += [
        "",
        "| dataset | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    table: dict[str, dict[str, Any]] = {}
    ext_table: dict[str, dict[str, Any]] = {}
    for ds in spec.datasets:
        row = []
        for algo in columns:
            cell_results = by_cell.get((ds, algo), [])
            values = [float(r.score) for r in cell_results if r.score is not None]
            (table if algo in spec.algos else ext_table).setdefault(ds, {})[algo] = {
                "scores": values,
                "seeds": [r.seed for r in cell_results],
            }
            text = _fmt(values)
            if 0 < len(values) < len(spec.seeds):
                text += f" ({len(values)}/{len(spec.seeds)} seeds)"
            row.append(text)
        lines.append(f"| {ds} | " + " | ".join(row) + " |")

    behaviour = {
        ds: next(
            (r.behaviour for r in results if r.dataset == ds and r.behaviour is not None), None
        )
        for ds in spec.datasets
    }
    if any(v is not None for v in behaviour.values()):
        lines += [
            "",
            "## The data's behaviour",
            "",
            f"The mean episode {unit} of each dataset's own episodes: the policy that collected "
            "the data, which an offline algorithm should beat.",
            "",
            "| dataset | behaviour |",
            "|---|---|",
            *(f"| {ds} | {v:.1f} |" for ds, v in behaviour.items() if v is not None),
        ]
    lines += _finetune_lines(spec, by_cell)
    versus = {peer: _versus_peer(spec, by_cell, pairs) for peer, pairs in PEERS.items()}
    for peer, peer_rows in versus.items():
        if peer_rows:
            lines += _versus_lines(peer, peer_rows, unit)

    evaluation = _evaluation_rows(spec, columns, by_cell, reps)
    if evaluation:
        lines += _evaluation_lines(evaluation, spec, unit)

    if notes_text:
        lines += ["", "## Notes", "", notes_text]

    # Aggregates over complete columns only (rliable needs the same runs x tasks for each).
    complete = _complete(spec, columns, by_cell, lambda r: r.score)
    agg = aggregate(complete, reps=reps) if complete else {}
    if agg:
        lines += [
            "",
            "## Aggregate over datasets and seeds",
            "",
            f"Interquartile mean and mean of the {unit} with stratified-bootstrap 95 % "
            f"confidence intervals ({reps} resamples; rliable, Agarwal et al., 2021). Only "
            "algorithms with every dataset x seed are included.",
            "",
            "| algorithm | IQM | 95 % CI | mean | 95 % CI |",
            "|---|---|---|---|---|",
        ]
        for algo, a in agg.items():
            lines.append(
                f"| {algo} | {a['iqm']:.1f} | [{a['iqm_ci'][0]:.1f}, {a['iqm_ci'][1]:.1f}] | "
                f"{a['mean']:.1f} | [{a['mean_ci'][0]:.1f}, {a['mean_ci'][1]:.1f}] |"
            )
        lines += ["", "![aggregate](aggregate.png)"]
        _plot_aggregate(complete, agg, dest / "aggregate.png", unit)
    protocol_agg = {
        name: aggregate(matrix, reps=reps)
        for name, getter in _PROTOCOL_METRICS.items()
        if (matrix := _complete(spec, columns, by_cell, getter))
    }
    if agg and protocol_agg:
        lines += _protocol_aggregate_lines(protocol_agg, columns, unit, reps)
    sel_cfg = selection or SelectionConfig()
    chosen = _selection_rows(spec, columns, by_cell, sel_cfg)
    if chosen:
        lines += _selection_lines(chosen, sel_cfg, unit)
        _plot_selection(chosen, dest / "selection.png", unit)
    for ds in spec.datasets:
        png = _plot_curves(ds, columns, by_cell, dest, unit, dashed=set(names))
        if png is not None:
            lines += ["", f"![{ds}]({png.name})"]

    bad = [r for r in everything if r.status != "done"]
    if bad:
        lines += ["", "## Cells without a result", ""]
        missing: dict[tuple[str, str], list[int]] = {}
        for r in bad:
            if r.status == "missing":  # not run yet: one line per dataset and algorithm
                missing.setdefault((r.dataset, r.algo), []).append(r.seed)
                continue
            detail = f": {r.error}" if r.error else ""
            lines.append(f"- {r.dataset} / {r.algo} / seed {r.seed}: {r.status}{detail}")
        for (ds, algo), seeds in missing.items():
            lines.append(f"- {ds} / {algo}: not run yet (seeds {', '.join(map(str, seeds))})")
    lines += [
        "",
        "## Protocol and commands",
        "",
        f"- steps {spec.steps:,d}, evaluation every {spec.eval_every:,d} steps over "
        f"{spec.eval_episodes} episodes, final evaluation over {spec.final_eval_episodes} "
        f"episodes, {spec.threads} thread(s) per run, on "
        f"{spec.device} (each cell's config.json records the device it ran on)",
        "- per-algorithm overrides: " + (json.dumps(spec.algo_config) or "none"),
        f"- machine: {machine or platform.platform()}",
        f"- the whole grid: `{grid_command(spec, out)}`, then `offrl bench report {out}`",
        "",
        "Each cell on its own:",
        "",
        "```",
        *[train_command(spec, c, out) for c in grid_cells(spec)],
        "```",
    ]
    commands = _external_commands(out, external)
    if commands:
        lines += ["", "External runs (each run's `command.txt`):", "", "```", *commands, "```"]
    report = {
        "protocol": spec.to_dict(),
        "unit": unit,
        "table": table,
        "behaviour": behaviour,
        "aggregate": agg,
        "cells": [_cell_json(r) for r in results],
        "external": {
            "table": ext_table,
            "cells": [_cell_json(r) for r in external],
            "commands": commands,
        },
        "offrl_vs_d3rlpy": versus["d3rlpy"],
        "offrl_vs_tianshou": versus["tianshou"],
        "evaluation": evaluation,
        "aggregate_protocol": protocol_agg,
        "selection": {"config": dataclasses.asdict(sel_cfg), "rows": chosen},
    }
    atomic_write_bytes(dest / "report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(dest / "REPORT.md", ("\n".join(lines) + "\n").encode())
    return report


_PEER_SETUP = {
    "d3rlpy": "Same HDF5 files, step budget, seeds and evaluation episodes; d3rlpy at its D4RL "
    "reproduction settings (see benchmarks/README.md).",
    "tianshou": "Same dataset file, update budget, seeds and evaluation episodes; Tianshou's "
    "algorithms at offrl's settings (its Atari examples') on offrl's networks "
    "(benchmarks/tianshou/train_discrete.py).",
}


def _versus_lines(peer: str, rows: list[dict[str, Any]], unit: str) -> list[str]:
    """The "offrl vs <peer>" table."""
    lines = [
        "",
        f"## offrl vs {peer}",
        "",
        f"{_PEER_SETUP[peer]} Final {unit}, mean ± std over seeds; the median gradient updates "
        "per second of training (one thread each, evaluations excluded) where both sides record "
        f"it; then the mean over seeds at each evaluation, step: offrl / {peer} (a single final "
        "score catches a fast-moving method at one point of its path).",
        "",
        f"| dataset | algorithm | offrl | {peer} | offrl − {peer} | updates/s | per evaluation |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        path = ", ".join(f"{step:,}: {a:.1f} / {b:.1f}" for step, a, b in row["per_evaluation"])
        speed = "–"
        ours, theirs = row["offrl_updates_per_s"], row["peer_updates_per_s"]
        if ours and theirs:
            speed = f"{ours:.0f} / {theirs:.0f} ({ours / theirs:.2f}×)"
        lines.append(
            f"| {row['dataset']} | {row['offrl']} / {row[peer]} | "
            f"{_fmt(row['offrl_scores'])} | {_fmt(row[f'{peer}_scores'])} | "
            f"{row['difference']:+.1f} | {speed} | {path or '–'} |"
        )
    return lines


def _versus_peer(
    spec: GridSpec, by_cell: dict[tuple[str, str], list[CellResult]], pairs: dict[str, str]
) -> list[dict[str, Any]]:
    """offrl's algorithm next to a peer's counterpart (``pairs``: offrl name -> the peer's
    column, ``<peer>-<name>``), per dataset, where both have scores: the scores, their
    difference of means, ``per_evaluation`` (``(step, offrl mean, peer mean)`` over seeds at
    every evaluation step that all the finished runs of both sides share), and each side's mean
    ``updates_per_s`` over its runs (``None`` where no run records it)."""

    def finished(ds: str, algo: str) -> list[CellResult]:
        return [r for r in by_cell.get((ds, algo), []) if r.score is not None]

    def rate(runs: list[CellResult]) -> float | None:
        values = [r.updates_per_s for r in runs if r.updates_per_s is not None]
        return statistics.fmean(values) if values else None

    rows = []
    for ds in spec.datasets:
        for ours, theirs in pairs.items():
            ra, rb = finished(ds, ours), finished(ds, theirs)
            if not (ra and rb):
                continue
            peer = theirs.split("-")[0]
            a = [float(r.score) for r in ra if r.score is not None]
            b = [float(r.score) for r in rb if r.score is not None]
            steps, ys = _aligned([r.curve or [] for r in (*ra, *rb)])
            per_eval = [
                (step, float(ys[: len(ra), j].mean()), float(ys[len(ra) :, j].mean()))
                for j, step in enumerate(steps)
            ]
            rows.append(
                {
                    "dataset": ds,
                    "offrl": ours,
                    peer: theirs,
                    "offrl_scores": a,
                    f"{peer}_scores": b,
                    "difference": statistics.fmean(a) - statistics.fmean(b),
                    "per_evaluation": per_eval,
                    "offrl_updates_per_s": rate(ra),
                    "peer_updates_per_s": rate(rb),
                }
            )
    return rows


_PROTOCOL_METRICS: dict[str, Callable[[CellResult], float | None]] = {
    "last": lambda r: r.score,
    "best": lambda r: r.best,
    "final_eval": lambda r: float(np.mean(r.final_eval)) if r.final_eval else None,
}
"""The evaluation protocol's per-seed quantities: the last evaluation, the best one, and the
final evaluation's mean over its episodes."""

_PROTOCOL_NAMES = {"last": "last", "best": "best", "final_eval": "final evaluation"}


def _cell_json(r: CellResult) -> dict[str, Any]:
    """A cell in ``report.json``: its fields without the curve and the final evaluation's
    episodes (their mean and count instead)."""
    row = {k: v for k, v in vars(r).items() if k not in ("curve", "final_eval")}
    row["final_eval_mean"] = float(np.mean(r.final_eval)) if r.final_eval else None
    row["final_eval_episodes"] = len(r.final_eval) if r.final_eval else 0
    return row


def _complete(
    spec: GridSpec,
    columns: list[str],
    by_cell: dict[tuple[str, str], list[CellResult]],
    value: Callable[[CellResult], float | None],
) -> dict[str, np.ndarray]:
    """``{algo: [seeds, datasets]}`` of ``value(cell)``, for the columns that have a value for
    every dataset x seed (rliable needs the same runs x tasks for each)."""
    out = {}
    for algo in columns:
        cells = {(ds, r.seed): r for ds in spec.datasets for r in by_cell.get((ds, algo), [])}
        values = [
            [value(cells[(ds, s)]) if (ds, s) in cells else None for ds in spec.datasets]
            for s in spec.seeds
        ]
        if all(v is not None for row in values for v in row):
            out[algo] = np.array(values, dtype=float)
    return out


def two_stage_bootstrap_ci(
    episodes: list[list[float]], reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean over seeds of each seed's mean episode score.

    ``episodes[i]`` are seed ``i``'s episode scores. Each resample draws the seeds with
    replacement, then each drawn seed's episodes with replacement, so the interval holds both
    the spread between seeds and each seed's evaluation noise (with one seed, it is the
    bootstrap over its episodes).
    """
    rng = np.random.default_rng(seed)
    sizes = np.array([len(e) for e in episodes])
    table = np.zeros((len(episodes), sizes.max()))  # [seeds, most episodes], padded
    for i, e in enumerate(episodes):
        table[i, : len(e)] = e
    picked = rng.integers(0, len(episodes), size=(reps, len(episodes)))  # [B, S] seeds
    draws = (rng.random((reps, len(episodes), sizes.max())) * sizes[picked][..., None]).astype(
        np.int64
    )  # [B, S, E] episode indices, each within its seed's episodes
    valid = np.arange(sizes.max()) < sizes[picked][..., None]  # a seed's own E_k draws count
    values = np.where(valid, table[picked[..., None], draws], 0.0)
    means = (values.sum(-1) / sizes[picked]).mean(-1)  # [B]
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _evaluation_rows(
    spec: GridSpec,
    columns: list[str],
    by_cell: dict[tuple[str, str], list[CellResult]],
    reps: int,
) -> list[dict[str, Any]]:
    """Per dataset and algorithm with results: the seeds' last and best evaluations (and the
    best ones' steps), and the final evaluation's mean over seeds with its two-stage CI."""
    rows = []
    for ds in spec.datasets:
        for algo in columns:
            cells = sorted(
                (r for r in by_cell.get((ds, algo), []) if r.score is not None),
                key=lambda r: r.seed,
            )
            if not cells:
                continue
            finals = [r for r in cells if r.final_eval]
            final = None
            if finals:
                eps = [list(r.final_eval or []) for r in finals]
                final = {
                    "seeds": [r.seed for r in finals],
                    "episodes": [len(e) for e in eps],
                    "means": [float(np.mean(e)) for e in eps],
                    "mean": float(np.mean([np.mean(e) for e in eps])),
                    "ci": list(two_stage_bootstrap_ci(eps, reps=reps)),
                }
            rows.append(
                {
                    "dataset": ds,
                    "algo": algo,
                    "seeds": [r.seed for r in cells],
                    "last": [float(r.score) for r in cells if r.score is not None],
                    "best": [r.best for r in cells],
                    "best_step": [r.best_step for r in cells],
                    "final_eval": final,
                }
            )
    return rows


def _evaluation_lines(rows: list[dict[str, Any]], spec: GridSpec, unit: str) -> list[str]:
    lines = [
        "",
        "## Last, best and final evaluation",
        "",
        f"Per dataset and algorithm, over seeds: **last** is the evaluation at the end of "
        f"training (the table above), **best** each seed's best evaluation during training "
        f"(the maximum over evaluations of the mean over {spec.eval_episodes} episodes, as "
        "CORL reports it; optimistic, since the step is chosen by the same evaluation that "
        "scores it), both mean ± std over seeds; **final evaluation** is the last policy "
        f"over {spec.final_eval_episodes} episodes (`final_eval_episodes`; environments seeded "
        "from `eval_seed` on, as every evaluation), the mean over seeds with a 95 % bootstrap "
        "CI (seeds, then each seed's episodes, resampled).",
        "",
        f"| dataset | algorithm | last | best | best at step | final evaluation {unit} [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        best = [b for b in row["best"] if b is not None]
        steps = ", ".join("–" if s is None else f"{s:,}" for s in row["best_step"])
        final = row["final_eval"]
        if final is None:
            final_text = "–"
        else:
            final_text = f"{final['mean']:.1f} [{final['ci'][0]:.1f}, {final['ci'][1]:.1f}]"
            if len(final["seeds"]) < len(row["seeds"]):
                final_text += f" ({len(final['seeds'])}/{len(row['seeds'])} seeds)"
        lines.append(
            f"| {row['dataset']} | {row['algo']} | {_fmt(row['last'])} | {_fmt(best)} | "
            f"{steps} | {final_text} |"
        )
    return lines


def _protocol_aggregate_lines(
    agg: dict[str, dict[str, dict[str, Any]]], columns: list[str], unit: str, reps: int
) -> list[str]:
    names = list(agg)
    lines = [
        "",
        f"IQM of the {unit} over datasets and seeds for each quantity of the evaluation "
        f"protocol, with stratified-bootstrap 95 % CIs ({reps} resamples); an algorithm enters "
        "a column when it has that quantity for every dataset x seed.",
        "",
        "| algorithm | " + " | ".join(f"{_PROTOCOL_NAMES[n]} IQM [95 % CI]" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for algo in columns:
        cells = []
        for n in names:
            a = agg[n].get(algo)
            cells.append(
                "–" if a is None else f"{a['iqm']:.1f} [{a['iqm_ci'][0]:.1f}, {a['iqm_ci'][1]:.1f}]"
            )
        if any(c != "–" for c in cells):
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return lines


def _selection_rows(
    spec: GridSpec,
    columns: list[str],
    by_cell: dict[tuple[str, str], list[CellResult]],
    config: SelectionConfig,
) -> list[dict[str, Any]]:
    """Per dataset and algorithm with final evaluations: Unifloral's UCB selection among its
    seeds (:func:`~offrl.bench.selection.ucb_selection`)."""
    rows = []
    for ds in spec.datasets:
        for algo in columns:
            cells = sorted(
                (r for r in by_cell.get((ds, algo), []) if r.final_eval), key=lambda r: r.seed
            )
            if not cells:
                continue
            result: SelectionResult = ucb_selection([r.final_eval or [] for r in cells], config)
            rows.append(
                {
                    "dataset": ds,
                    "algo": algo,
                    "seeds": [r.seed for r in cells],
                    "episodes": [len(r.final_eval or []) for r in cells],
                    "policy_means": result.policy_means.tolist(),
                    "budgets": result.budgets.tolist(),
                    "mean": result.mean.tolist(),
                    "ci_low": result.ci_low.tolist(),
                    "ci_high": result.ci_high.tolist(),
                }
            )
    return rows


def _selection_lines(rows: list[dict[str, Any]], config: SelectionConfig, unit: str) -> list[str]:
    longest = max(len(r["budgets"]) for r in rows)
    shown = [n for n in config.shown if n <= longest]
    subset = f"{config.subsample} of them" if config.subsample else "all of them"
    lines = [
        "",
        "## Policy selection under a limited online budget",
        "",
        "Which seed would a practitioner deploy after `n` online episodes? The policies of a "
        "dataset and algorithm are its seeds; a UCB bandit (alpha "
        f"{config.ucb_alpha:g}) over {subset} spends the episodes one at a time, each drawn "
        "from a policy's final-evaluation episodes, then picks the best empirical mean. Shown: "
        f"the expected {unit} of the pick, mean over {config.repeats} bandit runs with a "
        f"{100 * config.confidence:g} % bootstrap CI ({config.bootstraps} resamples; Unifloral, "
        "Jackson et al., 2025, offrl.bench.selection); **best seed** is what unlimited "
        "evaluation picks, **mean seed** what a random pick gets.",
        "",
        "| dataset | algorithm | seeds | "
        + " | ".join(f"n = {n}" for n in shown)
        + " | best seed | mean seed |",
        "|---|---|---|" + "---|" * (len(shown) + 2),
    ]
    for row in rows:
        cells = []
        for n in shown:
            if n > len(row["budgets"]):
                cells.append("–")
                continue
            i = n - 1
            cells.append(f"{row['mean'][i]:.1f} [{row['ci_low'][i]:.1f}, {row['ci_high'][i]:.1f}]")
        means = row["policy_means"]
        lines.append(
            f"| {row['dataset']} | {row['algo']} | {len(row['seeds'])} | "
            + " | ".join(cells)
            + f" | {max(means):.1f} | {statistics.fmean(means):.1f} |"
        )
    lines += ["", "![selection](selection.png)"]
    return lines


def _plot_selection(rows: list[dict[str, Any]], path: Path, unit: str) -> None:
    """One panel per dataset: the expected score of the bandit's pick against the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for row in (r for r in rows if r["dataset"] == ds):
            (line,) = ax.semilogx(row["budgets"], row["mean"], label=row["algo"])
            ax.fill_between(
                row["budgets"], row["ci_low"], row["ci_high"], color=line.get_color(), alpha=0.25
            )
            ax.axhline(max(row["policy_means"]), color=line.get_color(), ls=":", lw=1)
        ax.set_title(ds)
        ax.set_xlabel("online evaluation episodes")
        ax.set_ylabel(f"{unit} of the picked seed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _aligned(curves: list[list[tuple[int, float]]]) -> tuple[list[int], np.ndarray]:
    """The evaluation steps every curve has, and each curve's values there:
    ``[len(curves), len(steps)]``."""
    steps = sorted(set.intersection(*[{s for s, _ in c} for c in curves]))
    return steps, np.array([[dict(c)[s] for s in steps] for c in curves]).reshape(len(curves), -1)


def _external_commands(out: Path, external: list[CellResult]) -> list[str]:
    commands = []
    for r in external:
        path = Cell(r.algo, r.dataset, r.seed).run_dir(out) / "command.txt"
        if path.exists():
            commands.append(path.read_text().strip())
    return commands


def _plot_curves(
    ds: str,
    columns: list[str],
    by_cell: dict[tuple[str, str], list[CellResult]],
    out: Path,
    unit: str,
    dashed: set[str] | None = None,
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for algo in columns:
        curves = [r.curve for r in by_cell.get((ds, algo), []) if r.curve]
        if not curves:
            continue
        steps, ys = _aligned(curves)
        if not steps:
            continue
        mean, std = ys.mean(0), ys.std(0)
        style = "--" if algo in (dashed or set()) else "-"
        ax.plot(steps, mean, style, label=f"{algo} ({len(curves)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(unit)
    ax.set_title(ds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = Path(ds).stem if "/" in ds else ds
    path = out / f"curves_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_aggregate(
    scores: dict[str, np.ndarray], agg: dict[str, dict[str, Any]], path: Path, unit: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(scores)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    iqm = [agg[a]["iqm"] for a in algos]
    err = np.array(
        [[agg[a]["iqm"] - agg[a]["iqm_ci"][0], agg[a]["iqm_ci"][1] - agg[a]["iqm"]] for a in algos]
    ).T
    left.barh(algos, iqm, xerr=err, color="tab:blue", alpha=0.7, capsize=4)
    left.set_xlabel(f"IQM {unit} (95 % CI)")
    all_scores = np.concatenate([s.ravel() for s in scores.values()])
    taus = np.linspace(min(0.0, all_scores.min()), max(all_scores.max(), 1.0), 101)
    profiles = performance_profile(scores, taus)
    for algo in algos:
        right.plot(taus, profiles[algo], label=algo)
    right.set_xlabel(f"{unit} tau")
    right.set_ylabel("fraction of runs with score > tau")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
