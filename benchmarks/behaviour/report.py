"""Write ``benchmarks/results/behaviour/BEHAVIOUR.md`` from the shipped behaviour packs.

For every pack in ``offrl/data/behaviour/``: how it was trained (steps, seed, versions), the
return of each policy level (random / medium / expert, stochastic rollouts as the datasets use
them) with its D4RL normalised score, the evaluation curve of the training run (deterministic
policy, from the run's ``metrics.jsonl`` when ``--runs`` is given, else the snapshot returns
stored in the pack), and, for every dataset of that environment already built in the data
directory, its size and behaviour return::

    .venv/bin/python benchmarks/behaviour/report.py --runs /path/to/runs/behaviour
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offrl.data.registry import data_dir
from offrl.scores import normalized_score
from offrl.suite.factory import LEVELS, MUJOCO_DATASETS, PACK_DIR, load_pack
from offrl.train.loggers import read_metrics

OUT = Path(__file__).resolve().parents[1] / "results" / "behaviour" / "BEHAVIOUR.md"


def _score(env_id: str, ret: float) -> str:
    score = normalized_score(env_id, ret)
    return "–" if score is None else f"{score:.1f}"


def _dataset_rows(env_id: str) -> list[str]:
    import h5py

    rows = []
    for name, (env, _, level) in MUJOCO_DATASETS.items():
        path = data_dir() / "datasets" / f"{name}.hdf5"
        if env != env_id or not path.exists():
            continue
        with h5py.File(path, "r") as f:
            n = len(f["rewards"])
            ends = int(f["terminals"][()].sum() + f["timeouts"][()].sum())
            meta = dict(f["metadata"].attrs) if "metadata" in f else {}
        ret = meta.get("behaviour_return_mean")
        ret_text = f"{float(ret):.1f}" if ret is not None else "?"
        score = _score(env_id, float(ret)) if ret is not None else "–"
        rows.append(f"| `{name}` | {level} | {n:,d} | {ends:,d} | {ret_text} | {score} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="root of the `offrl online` runs (curves)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    lines = [
        "# Behaviour policies of offrl's MuJoCo datasets",
        "",
        "Each environment's policies come from one run of offrl's online SAC (paper defaults,",
        "seed 0, one thread), trained with `bash benchmarks/behaviour/train.sh ENV STEPS RUN_ROOT`",
        "(resumable) and exported with `offrl dataset pack RUN_ROOT/ENV --out",
        "offrl/data/behaviour/<env>.pt`. The *expert* is the best-evaluated snapshot of the last",
        "fifth of training; *medium* is the snapshot whose evaluation return is closest to",
        "random + 1/3 (expert − random). Level returns are measured on stochastic rollouts (the",
        "way the datasets are collected), 10 episodes each; normalised scores use D4RL's",
        "reference returns (`d4rl/infos.py`). These are offrl's datasets (`-v0`), not D4RL's.",
        "",
        "This file is written by `python benchmarks/behaviour/report.py`; the dataset levels are "
        f"{', '.join(LEVELS)}.",
    ]
    for pack_path in sorted(PACK_DIR.glob("*.pt")):
        pack = load_pack(pack_path)
        env = pack.env_id
        info = pack.info
        lines += [
            "",
            f"## {env}",
            "",
            f"- pack `offrl/data/behaviour/{pack_path.name}` "
            f"({pack_path.stat().st_size / 1e6:.1f} MB,"
            f" {len(pack.snapshots)} snapshots every {info.get('snapshot_every')} steps)",
            f"- SAC trained for {pack.train_steps:,d} environment steps (seed {pack.seed},"
            f" {pack.start_steps:,d} random steps first); offrl {info.get('offrl_version')},"
            f" gymnasium {info.get('gymnasium_version')}, mujoco {info.get('mujoco_version')}",
            "",
            "| level | policy | return (mean ± std, 10 episodes) | D4RL normalised |",
            "|---|---|---|---|",
        ]
        steps = {"random": "random init", "medium": f"step {pack.medium_step:,d}"}
        steps["expert"] = f"step {pack.expert_step:,d}"
        for level, r in pack.returns.items():
            lines.append(
                f"| {level} | {steps.get(level, '')} | {r['return_mean']:.1f} ± "
                f"{r['return_std']:.1f} | {_score(env, r['return_mean'])} |"
            )
        rows = _dataset_rows(env)
        if rows:
            lines += [
                "",
                "Datasets built from this pack so far (`offrl dataset make NAME`, seed 0):",
                "",
                "| dataset | level | transitions | episodes | behaviour return | D4RL normalised |",
                "|---|---|---|---|---|---|",
                *rows,
            ]
        curve: list[tuple[int, float, float | None]] = []
        source = "snapshot evaluations stored in the pack"
        if args.runs is not None and (args.runs / env / "metrics.jsonl").exists():
            source = "the run's evaluations"
            for rec in read_metrics(args.runs / env / "metrics.jsonl"):
                if rec.get("kind") == "eval":
                    curve.append(
                        (int(rec["step"]), rec["eval/return_mean"], rec.get("eval/return_std"))
                    )
        else:
            for step, ret in sorted((int(s), r) for s, r in info["eval_returns"].items()):
                curve.append((step, ret, None))
        lines += [
            "",
            f"Training curve (deterministic policy, 10 episodes; {source}):",
            "",
            "| env steps | eval return | D4RL normalised |",
            "|---|---|---|",
        ]
        for step, ret, std in curve:
            spread = f" ± {std:.1f}" if std is not None else ""
            lines.append(f"| {step:,d} | {ret:.1f}{spread} | {_score(env, ret)} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
