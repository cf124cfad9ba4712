"""The augmentation ablation side by side: one row per dataset, one column per arm.

    python benchmarks/augment/summarize.py OUT      # OUT: the directory run.sh wrote

Each arm is a grid directory ``OUT/<arm>/`` (``offrl bench run``); a cell's score is the D4RL
normalised score of its final evaluation (``final.json``), or its return where the environment
has no reference scores. Prints a Markdown table: mean ± standard deviation over the finished
seeds, and each augmented arm's difference from ``none``, paired by seed (a seed draws the same
rows in both arms, and initialises the same networks).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from offrl.bench.grid import grid_cells, load_grid


def _scores(grid: Path) -> dict[str, dict[int, float]]:
    """``{dataset: {seed: score}}`` of the grid's finished cells."""
    out: dict[str, dict[int, float]] = {}
    for cell in grid_cells(load_grid(grid)):
        final = cell.run_dir(grid) / "final.json"
        if not final.exists():
            continue
        data = json.loads(final.read_text())
        score = data.get("normalized_score")
        score = data.get("return_mean") if score is None else score
        if score is not None:
            out.setdefault(Path(cell.dataset).stem, {})[cell.seed] = float(score)
    return out


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f} (n={len(values)})"


def summarize(out: Path) -> str:
    """The Markdown summary of the arms in ``out``."""
    grids = sorted(p.parent for p in out.glob("*/grid.json"))
    grids.sort(key=lambda g: g.name != "none")  # the baseline first
    if not grids:
        raise SystemExit(f"{out}: no grid directories (run benchmarks/augment/run.sh first)")
    scores = {g.name: _scores(g) for g in grids}
    specs = {g.name: load_grid(g) for g in grids}
    base = specs[grids[0].name]
    datasets = sorted({d for s in scores.values() for d in s})
    augmented = [g.name for g in grids if g.name != "none"]
    lines = [
        "# Data augmentation ablation (S4RL state transforms) with TD3+BC",
        "",
        f"Final normalised score after {base.steps:,d} gradient steps, mean ± std over seeds "
        f"{base.seeds} ({base.eval_episodes} evaluation episodes each); Δ: the augmented arm "
        "minus `none`, paired by seed (mean ± std of the per-seed differences).",
        "",
        "| data | "
        + " | ".join(g.name for g in grids)
        + "".join(f" | Δ {a}" for a in augmented)
        + " |",
        "|---" * (1 + len(grids) + len(augmented)) + "|",
    ]
    for ds in datasets:
        row = [ds] + [_mean_std(list(scores[g.name].get(ds, {}).values())) for g in grids]
        for arm in augmented:
            none, aug = scores.get("none", {}).get(ds, {}), scores[arm].get(ds, {})
            row.append(_mean_std([aug[s] - none[s] for s in sorted(set(none) & set(aug))]))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Arms:", ""]
    for g in grids:
        lines.append(f"- `{g.name}`: augment {specs[g.name].augment or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(summarize(Path(sys.argv[1])), end="")
