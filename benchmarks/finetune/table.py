"""The fine-tuning results table in CORL's shape: per dataset and algorithm, the offline score
-> the score after the online steps (mean +- std over seeds), the initial drop and the regret.

    python benchmarks/finetune/table.py benchmarks/results/finetune/runs > RESULTS.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def main(root: str) -> None:
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for final_path in sorted(Path(root).glob("*/final.json")):
        final = json.loads(final_path.read_text())
        config = json.loads((final_path.parent / "config.json").read_text())
        dataset = config["finetune"]["offline_train"]["dataset"]
        cells[(dataset, final["algo"])].append({**final, "online": config["online"]})
    print("# Offline-to-online fine-tuning (offrl's datasets)\n")
    print("Made by `bash benchmarks/finetune/grid.sh`. Scores are D4RL-normalised; mean ± std")
    print("over seeds. Drop: offline score minus the worst evaluation in the first online steps.")
    print("Regret: CORL's, the mean of 1 - normalised return / 100 over online episodes.\n")
    print("| dataset | algorithm | seeds | online steps | offline → online | drop | regret |")
    print("|---|---|---|---|---|---|---|")
    for (dataset, algo), runs in sorted(cells.items()):
        before = [r["offline_score"] for r in runs if r.get("offline_score") is not None]
        after = [r["online_score"] for r in runs if r.get("online_score") is not None]
        drop = [r["initial_drop"] for r in runs if r.get("initial_drop") is not None]
        regret = [r["regret"] for r in runs if r.get("regret") is not None]
        steps = sorted({r["online"]["steps"] for r in runs})
        seeds = ",".join(str(r["seed"]) for r in runs)
        print(
            f"| {dataset} | {algo} | {seeds} | {steps} | {_fmt(before)} → {_fmt(after)} "
            f"| {_fmt(drop)} | {_fmt(regret) if regret else '-'} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/finetune/runs")
