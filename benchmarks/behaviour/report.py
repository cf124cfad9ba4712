"""Write ``benchmarks/results/behaviour/BEHAVIOUR.md`` from the shipped behaviour packs.

For every MuJoCo pack in ``offrl/data/behaviour/``: how it was trained (steps, seed, versions),
the dataset names it gives, the return of each policy level (random / medium / expert,
stochastic rollouts as the datasets use them) with its D4RL normalised score, the evaluation
curve of the training run (deterministic policy), and, for every dataset of that pack already
built in the data directory, its size and behaviour return. ``NOTES.md`` beside it, written by
hand, is appended.

The curves are committed in ``benchmarks/results/behaviour/curves/<pack>.csv``. With
``--runs``, a pack whose run directory is there (``RUN_ROOT/ENV``, or ``RUN_ROOT/ENV-s<SEED>``
for a seed other than 0) has its curve taken from the run's ``metrics.jsonl`` and the CSV
rewritten; without either, the curve is the snapshot evaluations stored in the pack::

    .venv/bin/python benchmarks/behaviour/report.py --runs /path/to/runs/behaviour
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from offrl.data.registry import data_dir
from offrl.scores import normalized_score
from offrl.suite.factory import LEVELS, MUJOCO_DATASETS, PACK_DIR, BehaviourPack, load_pack
from offrl.train.loggers import read_metrics

RESULTS = Path(__file__).resolve().parents[1] / "results" / "behaviour"
OUT = RESULTS / "BEHAVIOUR.md"
CURVES = RESULTS / "curves"
DATASETS = RESULTS / "datasets.csv"


def _score(env_id: str, ret: float) -> str:
    score = normalized_score(env_id, ret)
    return "–" if score is None else f"{score:.1f}"


def _learner(info: dict) -> str:
    """``SAC (paper defaults, 1 thread)``, or the algorithm with the options it was given (packs
    from before the algorithm was recorded are SAC's, one thread)."""
    options = ", ".join(f"{k}={v}" for k, v in (info.get("algo_config") or {}).items())
    threads = info.get("threads") or 1
    return (
        f"{info.get('algo', 'sac').upper()} ({options or 'paper defaults'}, {threads} "
        f"thread{'s' if threads != 1 else ''})"
    )


def _built_datasets() -> dict[str, list[str]]:
    """``name -> [transitions, episodes, behaviour return]`` of every MuJoCo dataset built so
    far: those recorded in ``datasets.csv`` (committed), updated from the data directory's
    files, and written back."""
    import h5py

    known: dict[str, list[str]] = {}
    if DATASETS.exists():
        for line in DATASETS.read_text().splitlines()[1:]:
            name, *fields = line.split(",")
            known[name] = fields
    for name in MUJOCO_DATASETS:
        path = data_dir() / "datasets" / f"{name}.hdf5"
        if path.exists():
            with h5py.File(path, "r") as f:
                n = len(f["rewards"])
                ends = int(f["terminals"][()].sum() + f["timeouts"][()].sum())
                meta = dict(f["metadata"].attrs) if "metadata" in f else {}
            ret = meta.get("behaviour_return_mean")
            known[name] = [str(n), str(ends), "" if ret is None else f"{float(ret):.1f}"]
    DATASETS.write_text(
        "\n".join(
            ["name,transitions,episodes,behaviour_return"]
            + [",".join([k, *v]) for k, v in sorted(known.items())]
        )
        + "\n"
    )
    return known


def _dataset_rows(known: dict[str, list[str]], pack_file: str, env_id: str) -> list[str]:
    """One table row per dataset of this pack in ``known`` (:func:`_built_datasets`)."""
    rows = []
    for name, (_, pack, level) in MUJOCO_DATASETS.items():
        if pack != pack_file or name not in known:
            continue
        n, ends, ret = known[name]
        score = _score(env_id, float(ret)) if ret else "–"
        rows.append(
            f"| `{name}` | {level} | {int(n):,d} | {int(ends):,d} | {ret or '?'} | {score} |"
        )
    return rows


def _pack_algo(pack: BehaviourPack) -> str:
    """The algorithm a pack's run used (packs from before it was recorded are SAC's)."""
    return str(pack.info.get("algo", "sac"))


def _run_algo(run: Path) -> str:
    """The algorithm of the ``offrl online`` run in ``run`` (from its ``config.json``), so that a
    TQC run is never read as the curve of a SAC pack of the same task and seed."""
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    return str(config.get("online", {}).get("algo", "sac"))


def _curve(
    pack: BehaviourPack, pack_file: str, runs: Path | None
) -> tuple[list[tuple[int, float, float | None]], str]:
    """The run's evaluation curve ``[(step, mean, std)]`` and where it came from; a run found
    under ``runs`` rewrites the committed CSV."""
    csv_path = CURVES / f"{Path(pack_file).stem}.csv"
    run = None
    if runs is not None:
        run = runs / (pack.env_id if pack.seed == 0 else f"{pack.env_id}-s{pack.seed}")
    if run is not None and (run / "metrics.jsonl").exists() and _run_algo(run) == _pack_algo(pack):
        curve = [
            (int(rec["step"]), float(rec["eval/return_mean"]), rec.get("eval/return_std"))
            for rec in read_metrics(run / "metrics.jsonl")
            if rec.get("kind") == "eval" and int(rec["step"]) <= pack.train_steps
        ]
        CURVES.mkdir(parents=True, exist_ok=True)
        rows = [f"{s},{m:.1f},{'' if d is None else f'{d:.1f}'}" for s, m, d in curve]
        csv_path.write_text("\n".join(["step,return_mean,return_std", *rows]) + "\n")
        return curve, "the run's evaluations"
    if csv_path.exists():
        curve = []
        for line in csv_path.read_text().splitlines()[1:]:
            step, mean, std = line.split(",")
            curve.append((int(step), float(mean), float(std) if std else None))
        return curve, f"the run's evaluations, `curves/{csv_path.name}`"
    snapshots = sorted((int(s), r) for s, r in pack.info["eval_returns"].items())
    return [(s, r, None) for s, r in snapshots], "snapshot evaluations stored in the pack"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="root of the `offrl online` runs (curves)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    lines = [
        "# Behaviour policies of offrl's MuJoCo datasets",
        "",
        "Each pack's policies come from one run of offrl's online SAC or TQC (the algorithm,",
        "its options and the seed given below), trained with `SEED=S bash",
        "benchmarks/behaviour/train.sh ENV STEPS RUN_ROOT` (resumable; `ALGO=tqc` for TQC) and",
        "exported with `offrl dataset pack RUN --out",
        "offrl/data/behaviour/<pack>.pt`. A retrained pack gives new dataset names (a new",
        "version), so that a name never changes its contents. The *expert* is the best-evaluated",
        "snapshot of the last fifth of training; *medium* is the snapshot whose evaluation",
        "return is closest to random + 1/3 (expert − random). Level returns are measured on",
        "stochastic rollouts (the way the datasets are collected), 10 episodes each; normalised",
        "scores use D4RL's reference returns (`d4rl/infos.py`). These are offrl's datasets, not",
        "D4RL's.",
        "",
        "This file is written by `python benchmarks/behaviour/report.py`; the dataset levels are "
        f"{', '.join(LEVELS)}.",
    ]
    built = _built_datasets()
    pack_files = sorted({pack for _, pack, _ in MUJOCO_DATASETS.values()})
    for pack_file in pack_files:
        pack_path = PACK_DIR / pack_file
        pack = load_pack(pack_path)
        env = pack.env_id
        info = pack.info
        own = [n for n, (_, f, _) in MUJOCO_DATASETS.items() if f == pack_file]
        names = sorted({n.rsplit("-", 1)[1] for n in own})
        short = own[0].split("-")[0]
        lines += [
            "",
            f"## {env}, `{short}-*-{'/'.join(names)}`",
            "",
            f"- pack `offrl/data/behaviour/{pack_path.name}` "
            f"({pack_path.stat().st_size / 1e6:.1f} MB,"
            f" {len(pack.snapshots)} snapshots every {info.get('snapshot_every')} steps)",
            f"- {_learner(info)} trained for {pack.train_steps:,d} environment steps (seed"
            f" {pack.seed}, {pack.start_steps:,d} random steps first); offrl"
            f" {info.get('offrl_version')},"
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
        rows = _dataset_rows(built, pack_file, env)
        if rows:
            lines += [
                "",
                "Datasets built from this pack so far (`offrl dataset make NAME`, seed 0):",
                "",
                "| dataset | level | transitions | episodes | behaviour return | D4RL normalised |",
                "|---|---|---|---|---|---|",
                *rows,
            ]
        curve, source = _curve(pack, pack_file, args.runs)
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
    notes = args.out.parent / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip("\n")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
