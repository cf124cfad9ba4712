"""The ``offrl`` command line.

offrl algos
offrl train --algo td3bc --dataset pendulum-medium-v0 [--steps N] [--seed S] [--out DIR]
offrl train --import examples/crr_cql.py --algo crr_cql ...   (your own algorithm)
offrl online --env HalfCheetah-v5 [--steps N] [--resume --out DIR]
offrl finetune --algo iql --dataset hopper-medium-v0 --offline-steps N [--steps N] [--mix M]
offrl finetune --algo calql --init RUN_DIR [--steps N]     (start from an offline run)
offrl evaluate RUN/checkpoints/latest.pt [--episodes N]
offrl dataset list | info NAME_OR_PATH | convert SRC DST [--format F]
offrl dataset convert log.parquet out.npz --obs 'o_*' --act 'a_*' --reward r --episode ep
offrl dataset make hopper-medium-v0 | make --run RUN --level medium --out FILE.hdf5
offrl dataset pack RUN --out PACK.pt | subsample SRC --fraction 0.1 --out FILE
offrl bench speed --algo td3bc [--json]
offrl plot RUN_DIR... [--out curves.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offrl._version import __version__
from offrl.config import add_options, field_docs, from_namespace, help_text
from offrl.errors import OfflineRLError
from offrl.plugins import import_module

if TYPE_CHECKING:
    from offrl.algos.base import Algorithm

__all__ = ["main"]

_LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _import_all(targets: list[str]) -> None:
    for target in targets:
        import_module(target)


def _algo_options(cls: type[Algorithm]) -> list[str]:
    """``name = default`` and the indented docstring of each of an algorithm's options."""
    lines = []
    docs = cls.config_class.option_docs
    for f in dataclasses.fields(cls.config_class):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        lines.append(f"    {f.name} = {default!r}")
        doc = docs.get(f.name, ("", ""))[1]
        if doc:
            lines.extend(textwrap.indent(textwrap.fill(doc, 80), " " * 8).splitlines())
    return lines


def cmd_algos(args: argparse.Namespace) -> int:
    from offrl.algos import get_algorithm, list_algorithms

    for name in list_algorithms():
        cls = get_algorithm(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}")
        if args.verbose:
            print("\n".join(_algo_options(cls)))
    return 0


def _on_screen(final: dict[str, Any]) -> dict[str, Any]:
    """``final.json`` without its per-episode lists (every episode's score stays in the file)."""
    final = {k: v for k, v in final.items() if k != "online_episode_returns"}
    if final.get("final_eval"):
        lists = ("returns", "normalized")
        final["final_eval"] = {k: v for k, v in final["final_eval"].items() if k not in lists}
    return final


def cmd_train(args: argparse.Namespace) -> int:
    from offrl.train import TrainConfig, train

    _import_all(args.imports)
    cfg = from_namespace(TrainConfig, args, algo_config=_parse_sets(args.set))
    final = train(cfg, resume=args.resume, allow_changes=args.allow_change)
    print(json.dumps(_on_screen(final), indent=2))
    print(f"run directory: {cfg.run_dir()}")
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    from offrl.train.online import OnlineConfig, train_online

    _import_all(args.imports)
    cfg = from_namespace(OnlineConfig, args, algo_config=_parse_sets(args.set))
    final = train_online(cfg, resume=args.resume, allow_changes=args.allow_change)
    print(json.dumps(_on_screen(final), indent=2))
    print(f"run directory: {cfg.run_dir()}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from offrl.train.finetune import FinetuneConfig, finetune

    _import_all(args.imports)
    cfg = from_namespace(FinetuneConfig, args, algo_config=_parse_sets(args.set))
    final = finetune(cfg, resume=args.resume, allow_changes=tuple(args.allow_change))
    print(json.dumps(_on_screen(final), indent=2))
    print(f"run directory: {cfg.run_dir()}")
    return 0


def cmd_bench_run(args: argparse.Namespace) -> int:
    from offrl.bench.grid import GridSpec, run_grid

    algo_config: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        algo, dot, name = key.partition(".")
        if not dot or not _:
            raise SystemExit(f"--set expects ALGO.KEY=VALUE, got {item!r}")
        algo_config.setdefault(algo.strip(), {})[name.strip()] = _parse_value(value)
    spec = from_namespace(GridSpec, args, algo_config=algo_config, imports=list(args.imports))
    _import_all(args.imports)
    result = run_grid(
        spec,
        args.out,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return 0
    if result["failed"]:
        print(f"{len(result['failed'])} cell(s) failed: {', '.join(result['failed'])}")
        return 1
    if result["skipped"]:
        print(
            f"{len(result['skipped'])} cell(s) left to the process training them: "
            f"{', '.join(result['skipped'])}"
        )
        return 0
    print(f"grid complete: {result['cells']} cells in {args.out}")
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from offrl.bench.report import write_report
    from offrl.bench.selection import SelectionConfig

    selection = from_namespace(SelectionConfig, args)
    write_report(
        args.out,
        reps=args.reps,
        machine=args.machine,
        notes=args.notes,
        to=args.to,
        selection=selection,
    )
    print((Path(args.to or args.out) / "REPORT.md").read_text())
    return 0


def cmd_bench_export(args: argparse.Namespace) -> int:
    from offrl.bench.grid import export_results

    moved = export_results(args.src, args.dest)
    print(
        f"{len(moved['copied'])} cell(s) copied to {args.dest}, "
        f"{len(moved['kept'])} already finished there kept"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from offrl.train import evaluate, load_checkpoint
    from offrl.train.checkpoint import restore_algorithm

    _import_all(args.imports)
    state = load_checkpoint(args.checkpoint, args.device)
    algo = restore_algorithm(state, args.device, str(args.checkpoint))
    env_id = args.env or state.get("env_id")
    if env_id is not None and not isinstance(env_id, str):
        raise OfflineRLError(f"{args.checkpoint}: damaged checkpoint (env_id {env_id!r})")
    if not env_id:
        raise OfflineRLError(f"{args.checkpoint}: the checkpoint names no environment: pass --env")
    result = evaluate(algo, env_id, args.episodes, seed=args.seed)
    out = {"checkpoint": str(args.checkpoint), "env_id": env_id, "step": state.get("step")}
    out.update(result.as_dict())
    print(json.dumps(out, indent=2))
    return 0


def cmd_ope_fqe(args: argparse.Namespace) -> int:
    from offrl.data import load_dataset
    from offrl.errors import ConfigError
    from offrl.io import write_json
    from offrl.ope import FQEConfig, evaluate_policies
    from offrl.train.checkpoint import load_algorithm

    _import_all(args.imports)
    known = {f.name for f in dataclasses.fields(FQEConfig)}
    options = _parse_sets(args.set)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"--set: unknown FQE option(s) {unknown}; known: {sorted(known)}")
    for flag in ("steps", "gamma"):
        if getattr(args, flag) is not None:
            options[flag] = getattr(args, flag)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    config = FQEConfig(**values)
    dataset = load_dataset(args.dataset, progress=print)
    policies = {str(path): load_algorithm(path) for path in args.checkpoints}
    report = evaluate_policies(
        policies,
        dataset,
        config,
        env_id=args.env,
        episodes=args.episodes,
        seed=args.seed,
        true_return=not args.no_true_return,
        progress=print,
    )
    out = {"dataset": args.dataset, **report.as_dict()}
    if args.out:
        write_json(Path(args.out), out)
    rho = report.rank_correlation
    if rho is not None:
        print(f"rank correlation (Spearman) of FQE estimates and true returns: {rho:.3f}")
    print(f"highest FQE estimate: {report.best().name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from offrl.export import export_policy, format_for

    _import_all(args.imports)
    out = Path(args.out)
    fmt = format_for(out, args.format)
    export_policy(args.checkpoint, out, format=fmt, env_id=args.env, atol=args.atol)
    print(
        f"wrote {out} ({fmt}, {out.stat().st_size / 1e6:.2f} MB): raw observations in, actions "
        f"in the environment's bounds out; equal to Algorithm.act to {args.atol:g}"
    )
    return 0


def _model_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """The prepared data a model-based run trains its model on, and the model options."""
    from offrl.data import load_dataset
    from offrl.data.normalization import ObsNormalizer, RewardTransform, preprocess
    from offrl.dynamics import DynamicsConfig
    from offrl.train.trainer import spec_for

    if args.dataset is None:
        raise OfflineRLError("dataset: name a dataset (or --path for a model file)")
    config = DynamicsConfig.from_options(_parse_sets(args.set))
    dataset = load_dataset(args.dataset, progress=print)
    spec = spec_for(dataset, dataset.env_id)
    normalizer = ObsNormalizer.for_run(dataset, bool(args.norm_obs))
    prepared = preprocess(dataset, normalizer, RewardTransform(), spec.action_low, spec.action_high)
    return prepared, config


def cmd_model_train(args: argparse.Namespace) -> int:
    from offrl.dynamics import fit_or_load

    prepared, config = _model_data(args)
    root = Path(args.model_dir) if args.model_dir else None
    fitted = fit_or_load(prepared, config, progress=print, root=root)
    print(json.dumps(fitted.summary(), indent=2))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from offrl.dynamics import load_model, model_path

    if args.path:
        path = Path(args.path)
    else:
        prepared, config = _model_data(args)
        path = model_path(prepared, config, Path(args.model_dir) if args.model_dir else None)
        if not path.exists():
            raise OfflineRLError(
                f"{path}: no model of this dataset and these options yet (offrl model train)"
            )
    fitted = load_model(path)
    info = fitted.summary()
    info["history"] = fitted.history
    print(json.dumps(info, indent=2))
    return 0


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from offrl.data import load_dataset

    ds = load_dataset(args.dataset)
    s = ds.stats()
    info = {
        "dataset": args.dataset,
        "env_id": ds.env_id,
        "transitions": s.num_transitions,
        "episodes": s.num_episodes,
        "terminals": int(ds.terminals.sum()),
        "timeouts": int(ds.timeouts.sum()),
        "obs_shape": list(ds.obs_shape),
        "action_dim": ds.action_dim,
        "discrete": ds.discrete,
        "return_mean": s.return_mean,
        "return_std": s.return_std,
        "return_min": s.return_min,
        "return_max": s.return_max,
        "episode_length_mean": s.length_mean,
        "metadata": ds.metadata,
    }
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from offrl.data.registry import data_dir
    from offrl.suite.builtin import BUILTIN
    from offrl.suite.factory import MUJOCO_DATASETS, PACK_DIR, load_pack
    from offrl.suite.minatar import MINATAR_DATASETS, TRANSITIONS, expert_file

    cache = data_dir() / "datasets"
    rows: list[tuple[str, str, str, str, bool]] = []  # name, env, transitions, return, cached
    for name, spec in BUILTIN.items():
        ret = _cached_return(cache / f"{name}.npz")
        size = spec.episodes * len(spec.policies) * 200
        rows.append((name, spec.env_id, f"{size:,d}", ret, ret != "?"))
    for name, game in MINATAR_DATASETS.items():
        ret = _cached_return(cache / f"{name}.npz")
        shipped = ret != "?" or expert_file(game).exists()
        size_text = f"{TRANSITIONS:,d}" if shipped else "-"
        rows.append(
            (name, f"MinAtar-{game}", size_text, ret if shipped else "(not shipped)", ret != "?")
        )
    packs: dict[str, Any] = {}
    for name, (env_id, pack_file, level) in MUJOCO_DATASETS.items():
        if pack_file not in packs:
            path = PACK_DIR / pack_file
            packs[pack_file] = load_pack(path) if path.exists() else None
        pack = packs[pack_file]
        if pack is None:
            rows.append((name, env_id, "-", "(not shipped)", False))
            continue
        size = {
            "medium-expert": 2_000_000,
            "medium-replay": pack.medium_step,
            "full-replay": pack.train_steps,
        }.get(level, 1_000_000)
        path = cache / f"{name}.hdf5"
        measured = pack.returns.get(level)
        if path.exists():
            ret = _cached_hdf5_return(path)
        elif measured:
            ret = f"{measured['return_mean']:.1f}"
        elif level == "medium-replay" and pack.replay is not None:
            ret = f"{_packed_replay_return(pack.replay):.1f}"
        else:
            ret = "mixed"
        rows.append((name, env_id, f"{size:,d}", ret, path.exists()))
    header = ("name", "env", "transitions", "behaviour return", "cached")
    w = [max(len(str(r[k])) for r in (header, *rows)) for k in range(4)]
    for r in (header, *rows):
        print(f"{r[0]:{w[0]}s}  {r[1]:{w[1]}s}  {r[2]:>{w[2]}s}  {r[3]:>{w[3]}s}  {r[4]}")
    return 0


def _cached_hdf5_return(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        value = f["metadata"].attrs.get("behaviour_return_mean") if "metadata" in f else None
    return "?" if value is None else f"{float(value):.1f}"


def _packed_replay_return(replay: dict[str, Any]) -> float:
    """Mean return of the complete episodes of a pack's replay buffer."""
    import numpy as np

    rewards = replay["rewards"].numpy().astype(np.float64)
    ends = np.flatnonzero(replay["terminals"].numpy() | replay["timeouts"].numpy())
    sums = np.add.reduceat(rewards, np.r_[0, ends[:-1] + 1]) if len(ends) else rewards.sum()
    return float(np.mean(sums))


def _cached_return(path: Path) -> str:
    if not path.exists():
        return "?"
    from offrl.data import load_dataset

    value = load_dataset(path).metadata.get("behaviour_return_mean")
    return f"{value:.1f}" if isinstance(value, float) else "?"


def cmd_dataset_make(args: argparse.Namespace) -> int:
    from offrl.data import load_dataset, save_dataset
    from offrl.suite.factory import build_level, export_pack, load_pack

    if args.name:
        ds = load_dataset(args.name) if not args.rebuild else _rebuild(args.name)
        ret = ds.metadata.get("behaviour_return_mean")
        ret_text = f"{ret:.1f}" if isinstance(ret, int | float) else "unknown"
        print(f"{args.name}: {len(ds):,d} transitions, behaviour return {ret_text}")
        return 0
    if not (args.run or args.pack) or not args.level or not args.out:
        raise SystemExit("dataset make: give a NAME, or --run/--pack with --level and --out")
    pack = load_pack(args.pack) if args.pack else export_pack(args.run)
    ds = build_level(pack, args.level, args.transitions, args.seed, args.num_envs, run_dir=args.run)
    save_dataset(ds, args.out, format=args.format)
    print(
        f"wrote {len(ds):,d} transitions to {args.out} "
        f"(behaviour return {ds.metadata['behaviour_return_mean']:.1f})"
    )
    return 0


def cmd_dataset_expert(args: argparse.Namespace) -> int:
    from offrl.suite.minatar import export_expert, load_expert

    out = export_expert(args.run, args.out)
    expert = load_expert(out)
    print(f"wrote the {expert.name} expert of {args.run} to {out} ({out.stat().st_size:,d} bytes)")
    return 0


def cmd_dataset_rollout(args: argparse.Namespace) -> int:
    from offrl.data import save_dataset
    from offrl.suite.rollout import noisy_rollout
    from offrl.train.checkpoint import load_algorithm, load_checkpoint

    state = load_checkpoint(args.checkpoint)
    if state.get("format") == "offrl-expert-1":  # an expert file (offrl dataset expert)
        from offrl.suite.minatar import load_expert

        algo = load_expert(args.checkpoint)
    else:
        algo = load_algorithm(args.checkpoint)
    env_id = args.env or state.get("env_id")
    if not env_id:
        raise SystemExit("dataset rollout: the checkpoint names no environment: pass --env")
    meta: dict[str, object] = {"behaviour_checkpoint": str(args.checkpoint)}
    ds = noisy_rollout(algo, env_id, args.transitions, args.eps, args.seed, args.num_envs, meta)
    save_dataset(ds, args.out, format=args.format)
    print(
        f"wrote {len(ds):,d} transitions ({ds.stats().num_episodes} episodes, behaviour return "
        f"{ds.metadata['behaviour_return_mean']:.2f}) to {args.out}"
    )
    return 0


def _rebuild(name: str) -> Any:
    from offrl.suite.builtin import make_builtin

    return make_builtin(name, rebuild=True)


def cmd_dataset_pack(args: argparse.Namespace) -> int:
    from offrl.suite.factory import export_pack

    pack = export_pack(args.run, medium_fraction=args.medium_fraction, expert_step=args.expert_step)
    pack.save(args.out)
    print(
        json.dumps(
            {
                "out": args.out,
                "medium_step": pack.medium_step,
                "expert_step": pack.expert_step,
                "returns": pack.returns,
            },
            indent=2,
        )
    )
    return 0


def cmd_dataset_subsample(args: argparse.Namespace) -> int:
    from offrl.data import load_dataset, save_dataset

    ds = load_dataset(args.src).subsample_episodes(args.fraction, args.seed)
    save_dataset(ds, args.out, format=args.format)
    print(f"wrote {ds.stats().num_episodes} episodes ({len(ds):,d} transitions) to {args.out}")
    return 0


_TABLE_FLAGS = {
    "obs": "--obs",
    "actions": "--act",
    "reward": "--reward",
    "episode": "--episode",
    "terminal": "--terminal",
    "timeout": "--timeout",
    "step": "--step",
    "next_obs": "--next-obs",
}
"""``offrl dataset convert``'s column options: TableColumns field -> its flag."""


def cmd_dataset_convert(args: argparse.Namespace) -> int:
    from offrl.data import load_d3rlpy, load_dataset, save_dataset
    from offrl.data.tabular import TABLE_SUFFIXES, TableColumns, load_table
    from offrl.errors import ConfigError

    given = {name: getattr(args, name) for name in _TABLE_FLAGS if getattr(args, name) is not None}
    discrete = {"auto": None, "discrete": True, "continuous": False}[args.action_space]
    if Path(args.src).suffix.lower() in TABLE_SUFFIXES:
        missing = [
            _TABLE_FLAGS[k] for k in ("obs", "actions", "reward", "episode") if k not in given
        ]
        if missing:
            raise ConfigError(
                f"dataset convert: a table needs {', '.join(missing)} (which columns hold the "
                "observations, actions, rewards and episode ids; see --help)"
            )
        columns = TableColumns(**given, discrete=discrete)
        ds = load_table(args.src, columns, env_id=args.env_id)
    elif given:
        flag = _TABLE_FLAGS[next(iter(given))]
        raise ConfigError(
            f"dataset convert: {flag} maps the columns of a table; {args.src} is not a "
            f"{' / '.join(TABLE_SUFFIXES)} file"
        )
    elif discrete is not None:
        if Path(args.src).suffix.lower() not in (".h5", ".hdf5"):
            raise ConfigError(
                f"dataset convert: --action-space {args.action_space} applies to tables and "
                f"d3rlpy .h5 files; {args.src} is neither"
            )
        ds = load_d3rlpy(args.src, env_id=args.env_id, discrete=discrete)
    else:
        ds = load_dataset(args.src, env_id=args.env_id)
    save_dataset(ds, args.dst, format=args.format)
    print(f"wrote {len(ds)} transitions to {args.dst}")
    return 0


def cmd_dataset_to_minari(args: argparse.Namespace) -> int:
    from offrl.data import load_dataset
    from offrl.data.loaders import export_minari

    ds = load_dataset(args.dataset, progress=print)
    where = export_minari(ds, args.dataset_id, args.minari_dir)
    print(f"wrote {len(ds)} transitions as Minari dataset {args.dataset_id!r} in {where}")
    return 0


def cmd_bench_speed(args: argparse.Namespace) -> int:
    from offrl.bench import measure_speed

    algos = args.algo or ["td3bc"]
    results = []
    for name in algos:
        r = measure_speed(
            name,
            threads=args.threads,
            seconds=args.seconds,
            repeats=args.repeats,
            algo_config=_parse_sets(args.set),
            device=args.device,
            cuda_graphs=args.cuda_graphs,
            obs_shape=tuple(int(x) for x in args.obs_shape.split(",")) if args.obs_shape else None,
            num_actions=args.num_actions,
        )
        results.append(r.as_dict())
        if not args.json:
            print(
                f"{name:10s} {r.updates_per_s:8.1f} updates/s  "
                f"{r.flops_per_update / 1e6:7.1f} MFLOP/update  "
                f"matmul {r.matmul_gflops:6.1f} GFLOP/s  bound {r.bound_updates_per_s:7.1f}/s  "
                f"({100 * r.bound_fraction:.0f}% of bound)"
            )
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 0


def cmd_bench_sample(args: argparse.Namespace) -> int:
    from offrl.bench import measure_sampling

    r = measure_sampling(n=args.transitions, batch_size=args.batch_size, threads=args.threads)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{r['us_per_batch']:.1f} us per batch of {args.batch_size} "
            f"from {args.transitions:,} transitions (best {r['us_per_batch_min']:.1f} us)"
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from offrl.train import plot_curves

    for run in args.runs:
        if not (Path(run) / "metrics.jsonl").is_file():
            raise OfflineRLError(f"{run}: not a run directory (it has no metrics.jsonl)")
    out = plot_curves([Path(r) for r in args.runs], Path(args.out), title=args.title)
    print(f"wrote {out}")
    return 0


def _add_import(parser: argparse.ArgumentParser, help: str) -> None:
    """``--import MODULE`` (repeatable): modules or ``.py`` files to import first."""
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help=help
    )


def _add_allow_change(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-change",
        action="append",
        default=[],
        metavar="OPTION",
        help="with --resume: let OPTION differ from the run's (steps, eval_every, eval_episodes, "
        "log_every, checkpoint_every, threads, tensorboard, wandb; recorded in config.json); "
        "repeatable",
    )


def _add_augment(parser: argparse.ArgumentParser | argparse._ArgumentGroup, doc: str) -> None:
    """``--augment SPEC`` (repeatable: applied in order); its help is the field's docstring."""
    parser.add_argument(
        "--augment",
        dest="augment",
        action="append",
        default=[],
        metavar="SPEC",
        help=help_text(doc) + " Repeatable.",
    )


def _add_set(parser: argparse.ArgumentParser, metavar: str) -> None:
    """``--set`` algorithm options: ``--set a=1 b=2`` and ``--set a=1 --set b=2`` are the same."""
    parser.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar=metavar,
        help="algorithm option (repeatable; several may follow one --set; `offrl algos -v` "
        "lists every algorithm's options)",
    )


def build_parser(epilogs: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``offrl`` command (``epilogs``: text shown under the help of
    the named subcommands).

    The options of ``train``, ``online`` and ``bench run`` are the fields of
    :class:`~offrl.train.TrainConfig`, :class:`~offrl.train.online.OnlineConfig` and
    :class:`~offrl.bench.grid.GridSpec` (:func:`offrl.config.add_options`): their types,
    defaults and docstrings are the flags' types, defaults and help."""
    p = argparse.ArgumentParser(prog="offrl", description="Offline reinforcement learning.")
    p.add_argument("--version", action="version", version=f"offrl {__version__}")
    p.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (anywhere)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("algos", help="list the registered algorithms")
    a.add_argument("-v", "--verbose", action="store_true", help="also print config defaults")
    a.set_defaults(func=cmd_algos)

    from offrl.bench.grid import GridSpec
    from offrl.data.tabular import TableColumns
    from offrl.train import TrainConfig
    from offrl.train.online import OnlineConfig

    epilogs = epilogs or {}
    t = sub.add_parser(
        "train",
        help="train an algorithm on a dataset",
        description="Train an algorithm on a dataset (the options are offrl.TrainConfig's).\n"
        "`offrl train --algo ALGO --help` also lists ALGO's options (--set KEY=VALUE).",
        epilog=epilogs.get("train"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_options = t.add_argument_group("run options (TrainConfig)")
    add_options(
        run_options,
        TrainConfig,
        skip=["algo_config", "augment"],  # augment specs hold commas: one --augment each
        flags={"env_id": ["--env"]},
        required=["algo", "dataset"],
    )
    _add_augment(run_options, field_docs(TrainConfig)["augment"])
    _add_run_flags(t)
    t.set_defaults(func=cmd_train)

    o = sub.add_parser(
        "online",
        help="train online on a Gymnasium environment (SAC)",
        description="Train online on a Gymnasium environment (the options are OnlineConfig's).\n"
        "`offrl online --algo ALGO --help` also lists ALGO's options (--set KEY=VALUE).",
        epilog=epilogs.get("online"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(
        o.add_argument_group("run options (OnlineConfig)"),
        OnlineConfig,
        skip=["algo_config"],
        flags={"env_id": ["--env"]},
        required=["env_id"],
    )
    _add_run_flags(o)
    o.set_defaults(func=cmd_online)

    from offrl.train.finetune import FinetuneConfig

    f = sub.add_parser(
        "finetune",
        help="fine-tune an offline policy online (offline-to-online)",
        description="Start from an offline run (--init) or train one (--dataset, --offline-steps),"
        " then keep learning in the dataset's environment (the options are FinetuneConfig's).\n"
        "`offrl finetune --algo ALGO --help` also lists ALGO's options (--set KEY=VALUE).",
        epilog=epilogs.get("finetune"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(
        f.add_argument_group("run options (FinetuneConfig)"),
        FinetuneConfig,
        skip=["algo_config"],
        flags={"env_id": ["--env"]},
    )
    _add_run_flags(f)
    f.set_defaults(func=cmd_finetune)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint")
    e.add_argument("checkpoint")
    _add_import(e, "import a module or .py file first (for a checkpoint of your own algorithm)")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=10_000)
    e.add_argument("--env")
    e.add_argument(
        "--device", default="cpu", help="torch device to act on (any, whatever trained it)"
    )
    e.set_defaults(func=cmd_evaluate)

    op = sub.add_parser("ope", help="off-policy evaluation of trained policies")
    opsub = op.add_subparsers(dest="ope_command", required=True)
    of = opsub.add_parser(
        "fqe",
        help="Fitted Q Evaluation: each checkpoint's value estimated from a dataset",
        description="Fit FQE (Le et al., 2019; d3rlpy's defaults) for each checkpoint on the "
        "dataset and print its initial-state value estimate; where the environment exists, "
        "beside the true discounted return of rollouts, and their rank correlation.",
    )
    of.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    of.add_argument("--dataset", required=True, help="dataset name or file the FQE is fit on")
    of.add_argument("--env", help="Gymnasium id (default: the dataset's)")
    of.add_argument("--steps", type=int, help="FQE updates per checkpoint (default 50000)")
    of.add_argument("--gamma", type=float, help="discount (default 0.99)")
    of.add_argument("--episodes", type=int, default=10, help="rollouts per true return")
    of.add_argument("--seed", type=int, default=0)
    of.add_argument(
        "--no-true-return", action="store_true", help="skip the rollouts in the environment"
    )
    of.add_argument("--out", help="write the report as JSON here")
    _add_import(of, "import a module or .py file first (for a checkpoint of your own algorithm)")
    of.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="FQE option (help(offrl.ope.FQEConfig) lists them: lr, batch_size, hidden, ...)",
    )
    of.set_defaults(func=cmd_ope_fqe)

    ex = sub.add_parser(
        "export",
        help="write a checkpoint's policy as TorchScript or ONNX (runs without offrl)",
        description="Write the deployed policy of CHECKPOINT to --out: raw observations in "
        "(float32 [B, *obs_shape]), actions in the environment's bounds out (discrete: int64 "
        "indices), with observation normalisation, the policy, squashing and action rescaling "
        "inside. The file is loaded back and checked against Algorithm.act before it is kept "
        "(ONNX: with onnxruntime, if installed). help(offrl.export) has the details.",
    )
    ex.add_argument("checkpoint")
    ex.add_argument("--out", required=True, help="file to write (.pt: TorchScript, .onnx: ONNX)")
    ex.add_argument(
        "--format",
        choices=["torchscript", "onnx"],
        default=None,
        help="default: from --out's suffix",
    )
    ex.add_argument("--env", help="environment id recorded in the file (default: the checkpoint's)")
    ex.add_argument(
        "--atol",
        type=float,
        default=1e-5,
        help="largest difference from Algorithm.act allowed in the check",
    )
    _add_import(ex, "import a module or .py file first (for a checkpoint of your own algorithm)")
    ex.set_defaults(func=cmd_export)

    mo = sub.add_parser("model", help="the dynamics model of the model-based algorithms")
    mosub = mo.add_subparsers(dest="model_command", required=True)
    for name, func, text in (
        ("train", cmd_model_train, "train a dataset's dynamics ensemble (or reuse it)"),
        ("info", cmd_model_info, "held-out error per member, elites, training history"),
    ):
        mp = mosub.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. The model is the one `offrl train --algo "
            "mopo|combo|mobile` trains and reuses: of the dataset's prepared data (observations "
            "normalised unless --norm-obs 0, actions in [-1, 1]), under the model options "
            "(help(offrl.dynamics.DynamicsConfig)), kept once per data and options.",
        )
        mp.add_argument("dataset", nargs="?" if name == "info" else None)
        if name == "info":
            mp.add_argument("--path", help="a model file instead of a dataset's")
        mp.add_argument("--norm-obs", type=int, default=1, choices=[0, 1])
        mp.add_argument("--model-dir", help="where models are kept (default: data_dir()/models)")
        _add_set(mp, "KEY=VALUE")
        mp.set_defaults(func=func)

    d = sub.add_parser("dataset", help="inspect and convert datasets")
    dsub = d.add_subparsers(dest="dataset_command", required=True)
    di = dsub.add_parser("info", help="transitions, episodes, returns, dimensions")
    di.add_argument("dataset")
    di.set_defaults(func=cmd_dataset_info)
    dl = dsub.add_parser("list", help="built-in datasets")
    dl.set_defaults(func=cmd_dataset_list)
    dm = dsub.add_parser("make", help="build a dataset (D4RL protocol) from SAC policies")
    dm.add_argument("name", nargs="?", help="a registered name, e.g. hopper-medium-v0")
    dm.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    dm.add_argument("--run", help="an `offrl online` run directory (any Gymnasium env)")
    dm.add_argument("--pack", help="a behaviour pack made by `offrl dataset pack`")
    dm.add_argument("--level", choices=list(_LEVELS))
    dm.add_argument("--out", help="output file (.hdf5 D4RL layout, .npz, or a Minari dir)")
    dm.add_argument("--format", choices=["npz", "d4rl", "minari"], default=None)
    dm.add_argument("--transitions", type=int, default=1_000_000)
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--num-envs", type=int, default=10)
    dm.set_defaults(func=cmd_dataset_make)
    dr = dsub.add_parser(
        "rollout",
        help="roll a trained policy out with epsilon-greedy noise into a dataset",
        description="The second seed's behaviour data: CHECKPOINT's policy (e.g. a QR-DQN "
        "expert from `offrl online --algo qrdqn`) acting in its environment, each action "
        "replaced by a uniform random one with probability --eps.",
    )
    dr.add_argument("checkpoint", help="a training checkpoint (checkpoints/latest.pt)")
    dr.add_argument("--out", required=True, help="output file (.npz, .hdf5) or Minari dir")
    dr.add_argument("--env", help="Gymnasium id (default: the checkpoint's)")
    dr.add_argument("--eps", type=float, default=0.2, help="random-action probability (0.2)")
    dr.add_argument("--transitions", type=int, default=1_000_000)
    dr.add_argument("--seed", type=int, default=0)
    dr.add_argument("--num-envs", type=int, default=10)
    dr.add_argument("--format", choices=["npz", "d4rl", "minari"], default=None)
    dr.set_defaults(func=cmd_dataset_rollout)
    dx = dsub.add_parser(
        "expert",
        help="keep an online QR-DQN run's policy network as an expert file",
        description="The file `offrl dataset rollout` and the minatar-<game>-noisy-v0 names "
        "roll out (offrl/data/behaviour/minatar-<game>-qrdqn.pt ships with offrl).",
    )
    dx.add_argument("run", help="an `offrl online` run directory")
    dx.add_argument("--out", required=True)
    dx.set_defaults(func=cmd_dataset_expert)
    dp = dsub.add_parser("pack", help="export an online run's behaviour policies")
    dp.add_argument("run")
    dp.add_argument("--out", required=True)
    dp.add_argument("--medium-fraction", type=float, default=1.0 / 3.0)
    dp.add_argument("--expert-step", type=int, default=None)
    dp.set_defaults(func=cmd_dataset_pack)
    dsub_s = dsub.add_parser("subsample", help="keep a seeded fraction of the episodes")
    dsub_s.add_argument("src")
    dsub_s.add_argument("--fraction", type=float, required=True)
    dsub_s.add_argument("--seed", type=int, default=0)
    dsub_s.add_argument("--out", required=True)
    dsub_s.add_argument("--format", choices=["npz", "d4rl", "minari"], default=None)
    dsub_s.set_defaults(func=cmd_dataset_subsample)
    dc = dsub.add_parser(
        "convert",
        help="convert between .npz, D4RL .hdf5 and Minari; read d3rlpy files and CSV/Parquet logs",
        description="Read SRC (.npz, D4RL .hdf5, a Minari directory, a d3rlpy .h5 dump, or a "
        ".csv / .parquet log with one row per step and the column options below) and write DST "
        "(.npz, .hdf5 or a Minari directory).",
    )
    dc.add_argument("src")
    dc.add_argument("dst")
    dc.add_argument("--format", choices=["npz", "d4rl", "minari"], default=None)
    dc.add_argument("--env-id", help="Gymnasium id of the environment (default: the file's)")
    dc.add_argument(
        "--action-space",
        choices=["auto", "discrete", "continuous"],
        default="auto",
        help="tables and d3rlpy files: how to read the actions (auto: a table's single integer "
        "column, or a d3rlpy file whose first episode's actions are whole numbers, is discrete)",
    )
    table_options = add_options(
        dc.add_argument_group(
            "table columns (.csv / .parquet: names or globs such as 'o_*', comma-separated; "
            "help(offrl.data.TableColumns))"
        ),
        TableColumns,
        skip=["discrete"],
        flags={
            name: [flag] + (["--actions"] if name == "actions" else [])
            for name, flag in _TABLE_FLAGS.items()
        },
    )
    for action in table_options.values():
        action.required = False  # required for a table only: cmd_dataset_convert checks
    dc.set_defaults(func=cmd_dataset_convert)
    dtm = dsub.add_parser(
        "to-minari",
        help="export a dataset into Minari's local datasets (minari.load_dataset(ID) opens it)",
    )
    dtm.add_argument("dataset", help="dataset name or file")
    dtm.add_argument("dataset_id", metavar="ID", help="Minari id, namespace/name-vN")
    dtm.add_argument(
        "--minari-dir",
        help="Minari's datasets directory (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)",
    )
    dtm.set_defaults(func=cmd_dataset_to_minari)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bs = bsub.add_parser("speed", help="updates/s, FLOPs and matmul-bound fraction")
    bs.add_argument("--algo", action="append", help="algorithm (repeatable; default td3bc)")
    bs.add_argument("--threads", type=int, default=2)
    bs.add_argument("--seconds", type=float, default=15.0)
    bs.add_argument("--repeats", type=int, default=3)
    bs.add_argument("--json", action="store_true")
    bs.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    bs.add_argument("--cuda-graphs", action="store_true", help="replay updates from CUDA graphs")
    bs.add_argument(
        "--obs-shape",
        help="discrete algorithms: frames C,H,W (default 4,84,84, the Nature DQN's; MinAtar: "
        "4,10,10)",
    )
    bs.add_argument("--num-actions", type=int, default=6, help="discrete algorithms (6)")
    _add_set(bs, "KEY=VALUE")
    bs.set_defaults(func=cmd_bench_speed)

    br = bsub.add_parser("run", help="algorithms x datasets x seeds under one protocol")
    protocol = br.add_argument_group("protocol (GridSpec; lists are comma-separated)")
    add_options(protocol, GridSpec, skip=["algo_config", "imports", "augment"])
    _add_augment(protocol, field_docs(GridSpec)["augment"])
    br.add_argument("--out", required=True, help="grid directory (re-run it to resume)")
    br.add_argument("--executor", choices=["local", "ray"], default="local")
    br.add_argument("--workers", type=int, default=2, help="local worker processes")
    br.add_argument("--ray", default=None, metavar="ADDRESS", help="Ray cluster address")
    br.add_argument(
        "--dry-run",
        action="store_true",
        help="write the grid's manifest and list the cells that would run; run nothing",
    )
    _add_import(br, help_text(field_docs(GridSpec)["imports"]) + " (repeatable)")
    _add_set(br, "ALGO.KEY=VALUE")
    br.set_defaults(func=cmd_bench_run)
    bp = bsub.add_parser("report", help="table, curves and IQM/CI for a grid directory")
    bp.add_argument("out")
    bp.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    bp.add_argument("--machine", default=None, help="machine description for the report")
    bp.add_argument("--notes", default=None, help="Markdown file included under 'Notes'")
    bp.add_argument(
        "--to", default=None, metavar="DIR", help="write the report here (default: the grid)"
    )
    from offrl.bench.selection import SelectionConfig

    add_options(
        bp.add_argument_group(
            "policy selection under an online budget (SelectionConfig: Unifloral's UCB bandit)"
        ),
        SelectionConfig,
        flags={
            f.name: [f"--selection-{f.name.replace('_', '-')}"]
            for f in dataclasses.fields(SelectionConfig)
        },
    )
    bp.set_defaults(func=cmd_bench_report)
    bx = bsub.add_parser(
        "export",
        help="copy a grid's results without checkpoints (to commit them, or to restore a grid)",
        description="Copy the manifest, the status and every finished or failed cell's "
        "config.json, metrics.jsonl, final.json (and command.txt, error.txt) from grid SRC to "
        "DEST, leaving checkpoints behind: a few KB per cell. `offrl bench report DEST` gives "
        "SRC's table; exporting such a copy into a new grid directory restores the grid, whose "
        "next `offrl bench run` re-runs only the cells it lacks. Cells finished in DEST are kept.",
    )
    bx.add_argument("src", help="grid directory to copy from")
    bx.add_argument("dest", help="directory to copy into (created if missing)")
    bx.set_defaults(func=cmd_bench_export)
    bm = bsub.add_parser("sample", help="microseconds per batch from an in-memory dataset")
    bm.add_argument("--transitions", type=int, default=1_000_000)
    bm.add_argument("--batch-size", type=int, default=256)
    bm.add_argument("--threads", type=int, default=2)
    bm.add_argument("--json", action="store_true")
    bm.set_defaults(func=cmd_bench_sample)

    pl = sub.add_parser("plot", help="plot evaluation curves of run directories")
    pl.add_argument("runs", nargs="+")
    pl.add_argument("--out", default="curves.png")
    pl.add_argument("--title")
    pl.set_defaults(func=cmd_plot)
    return p


def _option_values(argv: list[str], flag: str) -> list[str]:
    """The values given to ``flag`` in ``argv`` (``--flag V`` or ``--flag=V``)."""
    out = []
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif token.startswith(flag + "="):
            out.append(token.split("=", 1)[1])
    return out


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """What ``train``, ``online`` and ``finetune`` share beyond their config's options:
    ``--import``, ``--resume``, ``--allow-change`` and ``--set``."""
    _add_import(p, "import a module or .py file first (it registers your algorithm; repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    _add_allow_change(p)
    _add_set(p, "KEY=VALUE")


def _algo_help(argv: list[str]) -> dict[str, str]:
    """For ``offrl train|online|finetune --algo ALGO --help``: ALGO's options, shown under the
    help."""
    if not argv or argv[0] not in ("train", "online", "finetune"):
        return {}
    if not {"-h", "--help"} & set(argv):
        return {}
    names = _option_values(argv, "--algo") or (["sac"] if argv[0] == "online" else [])
    if not names:
        return {}
    from offrl.algos import get_algorithm

    try:
        _import_all(_option_values(argv, "--import"))
        cls = get_algorithm(names[-1])
    except (ImportError, KeyError, ValueError) as exc:
        return {argv[0]: f"(no options listed for --algo {names[-1]}: {exc})"}
    head = f"options of {cls.name} ({cls.config_class.__name__}; --set KEY=VALUE):"
    return {argv[0]: "\n".join([head, *_algo_options(cls)])}


_USER_ERRORS = (
    OfflineRLError,
    FileExistsError,
    FileNotFoundError,
    KeyError,
    ValueError,
    ImportError,
)
"""What a user's input can cause: reported in a line or two, exit status 2 (a diverged run: 3)."""


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
    print(f"offrl: warning: {message}", file=sys.stderr)


def _error_text(exc: BaseException) -> str:
    """One or two lines: the exception's message (a ``KeyError``'s without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > 2:
        lines = [lines[0], lines[-1]]
    return "\n  ".join(lines) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``offrl`` command.

    Every failure is reported in one or two lines naming the file, field or option, with exit
    status 2 for bad input, 3 for a diverged run, 1 for an internal error (a bug in offrl);
    ``--debug`` (anywhere on the line) shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser(_algo_help(argv)).parse_args(argv)
    if not debug:  # "offrl: warning: ..." instead of Python's file:line: Category: ...
        warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("offrl: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as exc:
        if debug:
            raise
        print(f"offrl: error: {_error_text(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, OfflineRLError) else 2
    except Exception as exc:
        if debug:
            raise
        print(
            f"offrl: internal error ({type(exc).__name__}: {_error_text(exc)}); this is a bug "
            "in offrl: please report it with the output of the same command with --debug",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
