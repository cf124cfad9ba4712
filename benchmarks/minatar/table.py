"""The second seed's tables for offrl's MinAtar results (``benchmarks/minatar/grid.sh`` runs it):
one row per game of online QR-DQN (the expert's score) | behavioural (the eps-noisy data's
return) | BC | BCQ | CQL | CRR | CRR+CQL, and the buffer-size ablation (100 %, 10 %, 1 %) for BC
and CQL. Raw returns, the last evaluation of each run, mean ± std over its seeds.

    R=benchmarks/results/minatar
    .venv/bin/python benchmarks/minatar/table.py --main $R/report.json \
        --ablation $R/ablation/report.json > $R/TABLE.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from offrl.suite.minatar import MINATAR_DATASETS, expert_file
from offrl.train.checkpoint import load_checkpoint

COLUMNS = {
    "bc": "BC",
    "discrete_bcq": "BCQ",
    "discrete_cql": "CQL",
    "discrete_crr": "CRR",
    "discrete_crr_cql": "CRR+CQL",
}


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {std:.1f} ({len(values)})"


def scores(report: dict[str, Any], dataset: str, algo: str) -> list[float]:
    return [float(x) for x in report["table"].get(dataset, {}).get(algo, {}).get("scores", [])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--main", required=True, help="the main grid's report.json")
    p.add_argument("--ablation", default=None, help="the ablation grid's report.json")
    args = p.parse_args()
    main_report = json.loads(Path(args.main).read_text())
    proto = main_report["protocol"]
    print("# MinAtar: offline discrete control in the second seed's shape\n")
    print(
        f"Raw returns: the last evaluation (10 episodes) after {proto['steps']:,d} updates, "
        "mean ± std over seeds (the number of seeds in brackets). *Online QR-DQN* is the expert "
        "whose eps = 0.2 rollouts made the data (its final evaluation, from its shipped file); "
        "*behavioural* is the data's mean episode return. Commands: "
        "`bash benchmarks/minatar/grid.sh` (see REPORT.md for every cell's command, the curves, "
        "IQM and CIs).\n"
    )
    print("| game | online QR-DQN | behavioural | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for dataset in proto["datasets"]:
        game = MINATAR_DATASETS.get(dataset, dataset)
        expert = load_checkpoint(expert_file(game)) if dataset in MINATAR_DATASETS else {}
        online = expert.get("return_mean")
        behaviour = main_report["behaviour"].get(dataset)
        cells = [fmt(scores(main_report, dataset, algo)) for algo in COLUMNS]
        print(
            f"| {game} | {'–' if online is None else f'{online:.1f}'} | "
            f"{'–' if behaviour is None else f'{behaviour:.1f}'} | " + " | ".join(cells) + " |"
        )
    if not args.ablation or not Path(args.ablation).exists():
        return
    small = json.loads(Path(args.ablation).read_text())
    print("\n## Buffer size (the seed's reduced-buffer tables)\n")
    print(
        "The same budget on 10 % and 1 % of each dataset's episodes (`offrl dataset subsample "
        "--seed 0`); the 100 % rows are the main grid's.\n"
    )
    print("| game | data | behavioural | BC | CQL |")
    print("|---|---|---|---|---|")
    for dataset in proto["datasets"]:
        game = MINATAR_DATASETS.get(dataset, dataset)
        rows = [("100 %", main_report, dataset)]
        for pct in (10, 1):
            name = f"{dataset}-{pct}pct"
            match = [d for d in small["protocol"]["datasets"] if Path(d).stem == name]
            if match:
                rows.append((f"{pct} %", small, match[0]))
        for label, report, ds in rows:
            behaviour = report["behaviour"].get(ds)
            bc, cql = (fmt(scores(report, ds, a)) for a in ("bc", "discrete_cql"))
            b = "–" if behaviour is None else f"{behaviour:.1f}"
            print(f"| {game} | {label} | {b} | {bc} | {cql} |")


if __name__ == "__main__":
    main()
