"""``offrl bench report``: a grid's table, learning curves and aggregate statistics.

* ``REPORT.md`` -- the seeds' table (datasets x algorithms, final normalised score mean ± std
  over seeds), the protocol (budget, evaluation, machine), the command that reproduces every
  cell, failed and missing cells, and the aggregate statistics;
* ``curves_<dataset>.png`` -- mean ± std over seeds of the evaluation curve, per algorithm;
* ``aggregate.png`` -- interquartile mean (IQM) with stratified-bootstrap 95 % confidence
  intervals, and performance profiles (Agarwal et al., 2021, "Deep RL at the Edge of the
  Statistical Precipice"), computed with the maintained ``rliable`` library;
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

import json
import platform
import statistics
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
from offrl.io import atomic_write_bytes
from offrl.train.loggers import read_metrics

__all__ = ["CellResult", "collect", "collect_external", "read_run", "aggregate", "write_report"]

D3RLPY_PAIRS = {"td3bc": "d3rlpy-td3plusbc", "iql": "d3rlpy-iql", "cql": "d3rlpy-cql"}
"""offrl algorithm -> the external column holding d3rlpy's counterpart."""


@dataclass
class CellResult:
    """The outcome of one cell."""

    algo: str
    dataset: str
    seed: int
    status: str
    """``done``, ``failed`` or ``missing``."""
    score: float | None = None
    """Final normalised score (or return where no reference exists)."""
    normalised: bool = True
    curve: list[tuple[int, float]] | None = None
    error: str | None = None


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
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    return CellResult(
        algo,
        dataset,
        seed,
        "done",
        final["normalized_score"] if normalised else final["return_mean"],
        normalised,
        [(int(r["step"]), float(r[key])) for r in evals if r.get(key) is not None],
    )


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
    """Fraction of runs with score > tau, per algorithm (rliable's performance profile)."""
    from rliable import library as rly

    profiles, _ = rly.create_performance_profile(scores, taus)
    return {algo: [float(v) for v in profiles[algo]] for algo in scores}


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {std:.1f}"


def write_report(
    out: str | Path,
    reps: int = 2000,
    machine: str | None = None,
    notes: str | Path | None = None,
    to: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``REPORT.md``, ``report.json`` and the figures for the grid in ``out``.

    ``notes``: a Markdown file whose text goes into the report under "Notes", after the tables
    (the place to explain a result, e.g. why one library is behind another). ``to``: the
    directory to write them in (created if missing), so that a report of a committed copy of a
    grid (``offrl bench export``) leaves the copy as it is; by default, ``out`` itself.
    """
    out = Path(out)
    dest = Path(to) if to is not None else out
    dest.mkdir(parents=True, exist_ok=True)
    notes_text = Path(notes).read_text().strip() if notes is not None else ""
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
    lines = [
        "# Benchmark report",
        "",
        f"Final {unit} after {spec.steps:,d} gradient steps, mean ± std over seeds "
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

    versus = _versus_d3rlpy(spec, by_cell)
    if versus:
        lines += [
            "",
            "## offrl vs d3rlpy",
            "",
            f"Same HDF5 files, step budget, seeds and evaluation episodes; final {unit}, mean ± "
            "std over seeds (d3rlpy at its D4RL reproduction settings, see benchmarks/README.md), "
            "then the mean over seeds at each evaluation, step: offrl / d3rlpy (a single final "
            "score catches a fast-moving method at one point of its path).",
            "",
            "| dataset | algorithm | offrl | d3rlpy | offrl − d3rlpy | per evaluation |",
            "|---|---|---|---|---|---|",
        ]
        for row_ in versus:
            path = ", ".join(
                f"{step:,}: {a:.1f} / {b:.1f}" for step, a, b in row_["per_evaluation"]
            )
            lines.append(
                f"| {row_['dataset']} | {row_['offrl']} / {row_['d3rlpy']} | "
                f"{_fmt(row_['offrl_scores'])} | {_fmt(row_['d3rlpy_scores'])} | "
                f"{row_['difference']:+.1f} | {path or '–'} |"
            )

    if notes_text:
        lines += ["", "## Notes", "", notes_text]

    # Aggregates over complete columns only (rliable needs the same runs x tasks for each).
    complete = {
        algo: np.array(
            [
                [next(r.score for r in by_cell[(ds, algo)] if r.seed == s) for ds in spec.datasets]
                for s in spec.seeds
            ],
            dtype=float,
        )
        for algo in columns
        if all(
            {r.seed for r in by_cell.get((ds, algo), [])} >= set(spec.seeds) for ds in spec.datasets
        )
    }
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
        f"{spec.eval_episodes} episodes, {spec.threads} thread(s) per run, on "
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
        "aggregate": agg,
        "cells": [{k: v for k, v in vars(r).items() if k != "curve"} for r in results],
        "external": {
            "table": ext_table,
            "cells": [{k: v for k, v in vars(r).items() if k != "curve"} for r in external],
            "commands": commands,
        },
        "offrl_vs_d3rlpy": versus,
    }
    atomic_write_bytes(dest / "report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(dest / "REPORT.md", ("\n".join(lines) + "\n").encode())
    return report


def _versus_d3rlpy(
    spec: GridSpec, by_cell: dict[tuple[str, str], list[CellResult]]
) -> list[dict[str, Any]]:
    """offrl's algorithm next to d3rlpy's counterpart, per dataset, where both have scores,
    with ``per_evaluation``: ``(step, offrl mean, d3rlpy mean)`` over seeds at every evaluation
    step that all the finished runs of both sides share."""

    def finished(ds: str, algo: str) -> list[tuple[float, list[tuple[int, float]]]]:
        """(final score, curve) of each run of ``algo`` on ``ds`` that has a score."""
        return [
            (r.score, r.curve or []) for r in by_cell.get((ds, algo), []) if r.score is not None
        ]

    rows = []
    for ds in spec.datasets:
        for ours, theirs in D3RLPY_PAIRS.items():
            ra, rb = finished(ds, ours), finished(ds, theirs)
            if ra and rb:
                a, b = [score for score, _ in ra], [score for score, _ in rb]
                steps, ys = _aligned([curve for _, curve in (*ra, *rb)])
                per_eval = [
                    (step, float(ys[: len(ra), j].mean()), float(ys[len(ra) :, j].mean()))
                    for j, step in enumerate(steps)
                ]
                rows.append(
                    {
                        "dataset": ds,
                        "offrl": ours,
                        "d3rlpy": theirs,
                        "offrl_scores": a,
                        "d3rlpy_scores": b,
                        "difference": statistics.fmean(a) - statistics.fmean(b),
                        "per_evaluation": per_eval,
                    }
                )
    return rows


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
