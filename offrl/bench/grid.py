"""``offrl bench run``: algorithms x datasets x seeds under one protocol, resumable.

Every cell is an ordinary ``offrl train`` run directory, ``OUT/<dataset>/<algo>/s<seed>/``,
trained with the same step budget, evaluation schedule, evaluation episodes and normalisation,
each algorithm at its own defaults. Nothing about a grid is special beyond ``OUT/grid.json``
(the protocol) and ``OUT/status.json`` (the last outcome of every cell):

* a cell whose ``final.json`` exists is done and never re-run;
* a cell with a checkpoint continues from it (``--resume``): an interrupted grid picks up where
  it stopped;
* a cell that raises is recorded as failed with its error (``error.txt`` in its directory and
  ``status.json``), the others go on, and ``run_grid`` reports it: nothing is dropped silently.
  Running the grid again retries it;
* a cell being trained holds a lock (``flock`` on ``<cell>/.lock``), so two ``bench run``
  processes on one directory (a second one started on an idle core, say, or a grid re-run
  while the first is still going) never train the same cell: the second reports it as skipped
  and goes on with the next. ``status.json`` is updated under a lock too.

Executors: ``"local"`` runs ``workers`` single-threaded processes (one per core beats one
two-threaded run in total throughput on a small machine, see the project's PERF notes);
``"ray"`` sends each cell to a Ray cluster (``address``, or a local Ray started for you) as a
one-CPU task. Both run the same function on the same cell configs, so they give the same
results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import shlex
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from offrl.algos import get_algorithm
from offrl.config import check_options
from offrl.data.augment import canonical_specs
from offrl.errors import ConfigError
from offrl.io import atomic_write_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process locks, one grid at a time
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "GridSpec",
    "Cell",
    "claim",
    "export_results",
    "run_grid",
    "grid_cells",
    "grid_command",
    "load_grid",
    "run_dirs",
    "train_command",
]


@dataclass
class GridSpec:
    """The protocol shared by every cell of a grid."""

    algos: list[str]
    """Registered algorithm names (each at its defaults unless ``algo_config`` says otherwise)."""
    datasets: list[str]
    """Built-in dataset names or paths."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Training seeds."""
    steps: int = 100_000
    """Gradient updates per cell."""
    eval_every: int = 10_000
    """Evaluation interval (the learning curves' resolution)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    final_eval_episodes: int = 100
    """Episodes of each cell's final evaluation (``TrainConfig.final_eval_episodes``: every
    episode's score is kept, for the report's confidence intervals and policy selection); 0
    skips it."""
    checkpoint_every: int = 10_000
    """Checkpoint interval: the most work an interruption can lose per cell."""
    algo_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-algorithm overrides (empty: paper defaults for all)."""
    task_defaults: list[str] = field(default_factory=list)
    """Algorithms whose cells take their per-task settings for the cell's dataset, where the
    algorithm's config has a table (``for_task``: ReBRAC's BC coefficients, MOPO's / COMBO's /
    MOBILE's horizon and penalty) and a row for the dataset; ``algo_config`` still overrides
    them. Each cell's ``config.json`` and command write the settings out. Like ``algo_config``,
    an algorithm's entry is fixed once its cells exist; other algorithms may be added."""
    augment: list[str] = field(default_factory=list)
    """Data augmentation of every cell (``TrainConfig.augment``: specs such as ``gaussian`` or
    ``scale:low=0.8,high=1.2``, applied in order); part of the protocol."""
    augment_space: Literal["raw", "normalized"] = "raw"
    """Where ``augment`` perturbs the states (``TrainConfig.augment_space``)."""
    online_steps: int = 0
    """Offline-to-online: after its ``steps`` offline updates, every cell fine-tunes online for
    this many environment steps (``offrl finetune``, :mod:`offrl.train.finetune`), evaluated
    every ``eval_every`` of them; the report then adds the fine-tuning table (offline score ->
    online score, initial drop, regret). 0: offline only."""
    online_mix: str = "auto"
    """With ``online_steps``: how batches mix offline and online data
    (``FinetuneConfig.mix``; ``auto``: each algorithm's recipe)."""
    threads: int = 1
    """Torch threads per cell."""
    device: str = "cpu"
    """Torch device of every cell, e.g. ``cuda``. Not part of the protocol: a grid may be
    finished on other hardware (each cell's ``config.json`` records where it ran)."""
    gpus_per_cell: float = 1.0
    """With the Ray executor and a GPU ``device``: the share of one GPU a cell asks Ray for
    (0.25 packs four cells on a GPU; small networks leave most of one idle)."""
    imports: list[str] = field(default_factory=list)
    """Modules or ``.py`` files registering user algorithms, imported in every worker."""

    def __post_init__(self) -> None:
        check_options(self)  # types and ranges, with a message naming the option
        self.augment = list(canonical_specs(self.augment))  # every option written out
        if self.online_steps and self.augment:
            raise ConfigError("option augment: not available with online_steps (fine-tuning)")
        if self.final_eval_episodes < 0:
            raise ConfigError(
                f"option final_eval_episodes: {self.final_eval_episodes!r} is outside [0, inf) "
                "(GridSpec.final_eval_episodes)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what ``grid.json`` stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GridSpec:
        """The inverse of :meth:`to_dict`."""
        return cls(**values)


@dataclass(frozen=True)
class Cell:
    """One (algorithm, dataset, seed) run of a grid."""

    algo: str
    dataset: str
    seed: int

    def run_dir(self, out: Path) -> Path:
        """This cell's ``offrl train`` run directory under the grid folder ``out``."""
        name = Path(self.dataset).stem if "/" in self.dataset else self.dataset
        return out / name / self.algo / f"s{self.seed}"

    @property
    def key(self) -> str:
        """``dataset/algo/sSEED``: how logs and reports name the cell."""
        return f"{self.dataset}/{self.algo}/s{self.seed}"


def grid_cells(spec: GridSpec) -> list[Cell]:
    """All cells, dataset-major (the order they are submitted in)."""
    return [Cell(a, d, s) for d in spec.datasets for a in spec.algos for s in spec.seeds]


def train_command(spec: GridSpec, cell: Cell, out: Path) -> str:
    """The ``offrl train`` (with ``online_steps``: ``offrl finetune``) command line that
    (re)produces ``cell``."""
    parts = [
        "offrl finetune" if spec.online_steps else "offrl train",
        f"--algo {cell.algo}",
        f"--dataset {cell.dataset}",
        f"--seed {cell.seed}",
    ]
    if spec.online_steps:  # steps: the online ones; the offline phase is trained first
        parts += [
            f"--offline-steps {spec.steps}",
            f"--steps {spec.online_steps}",
            f"--buffer-size {spec.online_steps}",
            f"--offline-eval-every {spec.eval_every}",
            f"--mix {spec.online_mix}",
            f"--eval-every {spec.eval_every}",
            f"--eval-episodes {spec.eval_episodes}",
            f"--final-eval-episodes {spec.final_eval_episodes}",
        ]
    else:
        parts += [
            f"--steps {spec.steps}",
            f"--eval-every {spec.eval_every}",
            f"--eval-episodes {spec.eval_episodes}",
            f"--final-eval-episodes {spec.final_eval_episodes}",
        ]
    parts.append(f"--threads {spec.threads}")
    if spec.device != "cpu":
        parts.append(f"--device {spec.device}")
    parts += _augment_flags(spec)
    for key, value in cell_algo_config(spec, cell).items():
        parts.append(f"--set {key}={json.dumps(value, separators=(',', ':'))}")
    parts.append(f"--out {cell.run_dir(out)}")
    return " ".join(parts)


def grid_command(spec: GridSpec, out: Path) -> str:
    """The ``offrl bench run`` command line that (re)produces the whole grid."""
    parts = [
        "offrl bench run",
        f"--algos {','.join(spec.algos)}",
        f"--datasets {','.join(spec.datasets)}",
        f"--seeds {','.join(map(str, spec.seeds))}",
        f"--steps {spec.steps}",
        f"--eval-every {spec.eval_every}",
        f"--eval-episodes {spec.eval_episodes}",
        f"--final-eval-episodes {spec.final_eval_episodes}",
    ]
    if spec.threads != 1:
        parts.append(f"--threads {spec.threads}")
    if spec.device != "cpu":
        parts.append(f"--device {spec.device}")
    if spec.task_defaults:
        parts.append(f"--task-defaults {','.join(spec.task_defaults)}")
    if spec.online_steps:
        parts += [f"--online-steps {spec.online_steps}", f"--online-mix {spec.online_mix}"]
    parts += [f"--import {t}" for t in spec.imports]
    parts += _augment_flags(spec)
    for algo, options in spec.algo_config.items():
        for key, value in options.items():
            parts.append(f"--set {algo}.{key}={json.dumps(value, separators=(',', ':'))}")
    parts.append(f"--out {out}")
    return " ".join(parts)


def cell_algo_config(spec: GridSpec, cell: Cell) -> dict[str, Any]:
    """The options ``cell``'s algorithm runs with, beyond its defaults: if it is one of
    ``spec.task_defaults``, the settings its config's ``for_task`` gives for the cell's dataset
    that differ from the defaults (none if it has no table or no row for the dataset), then
    ``spec.algo_config``'s overrides."""
    options: dict[str, Any] = {}
    if cell.algo in spec.task_defaults:  # (only then is the algorithm looked up)
        config_class = get_algorithm(cell.algo).config_class
        for_task = getattr(config_class, "for_task", None)
        try:
            tuned = {} if for_task is None else for_task(Path(cell.dataset).stem).to_dict()
        except KeyError:  # no row for this dataset: the defaults
            tuned = {}
        defaults = config_class().to_dict()
        options = {k: v for k, v in tuned.items() if defaults.get(k) != v}
    return {**options, **spec.algo_config.get(cell.algo, {})}


def _augment_flags(spec: GridSpec) -> list[str]:
    flags = [f"--augment {shlex.quote(a)}" for a in spec.augment]
    if spec.augment and spec.augment_space != "raw":
        flags.append(f"--augment-space {spec.augment_space}")
    return flags


def _cell_config(spec: GridSpec, cell: Cell, out: Path) -> dict[str, Any]:
    return {
        "algo": cell.algo,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "steps": spec.steps,
        "eval_every": spec.eval_every,
        "eval_episodes": spec.eval_episodes,
        "final_eval_episodes": spec.final_eval_episodes,
        "checkpoint_every": spec.checkpoint_every,
        "threads": spec.threads,
        "device": spec.device,
        "progress": False,
        "out": str(cell.run_dir(out)),
        "algo_config": cell_algo_config(spec, cell),
        "augment": tuple(spec.augment),
        "augment_space": spec.augment_space,
        "imports": list(spec.imports),
        "online_steps": spec.online_steps,
        "online_mix": spec.online_mix,
    }


@contextlib.contextmanager
def claim(path: str | Path, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the duration:
    yields True if this process got it, False if another process holds it (with ``wait``,
    waits for it instead, and always yields True).

    An ``flock``: the operating system drops it when its holder dies, so a killed grid leaves
    no stale lock behind. (Without ``fcntl``, on Windows, it always yields True.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        try:
            yield True
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def run_cell(config: dict[str, Any]) -> dict[str, Any]:
    """Train one cell (resuming if it has a checkpoint) unless another process is training it;
    never raises.

    Returns ``{"status": "done" | "failed" | "skipped", "final": ..., "error": ...,
    "seconds": ...}``. Module-level so that worker processes and Ray can import it.
    """
    from offrl.plugins import import_module
    from offrl.train import TrainConfig, train

    t0 = time.perf_counter()
    config = dict(config)
    imports = config.pop("imports", [])
    online_steps, mix = config.pop("online_steps", 0), config.pop("online_mix", "auto")
    run = Path(config["out"])
    with claim(run / ".lock") as mine:
        if not mine:
            return {"status": "skipped", "error": "running in another process", "seconds": 0.0}
        try:
            if (run / "final.json").exists():  # finished by another process meanwhile
                final = json.loads((run / "final.json").read_text())
                return {"status": "done", "final": final, "seconds": 0.0}
            for target in imports:  # user algorithms register themselves in this process too
                import_module(target)
            if online_steps:
                final = _finetune_cell(config, online_steps, mix)
            else:
                final = train(TrainConfig(**config), resume=True)
            (run / "error.txt").unlink(missing_ok=True)
            return {"status": "done", "final": final, "seconds": time.perf_counter() - t0}
        except Exception as exc:  # a failed cell is reported, and the grid goes on
            run.mkdir(parents=True, exist_ok=True)
            text = "".join(traceback.format_exception(exc))
            atomic_write_bytes(run / "error.txt", text.encode())
            return {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t0,
            }


def _finetune_cell(config: dict[str, Any], online_steps: int, mix: str) -> dict[str, Any]:
    """An offline-to-online cell: ``config['steps']`` offline updates, then ``online_steps``
    environment steps, both resumable."""
    from offrl.train.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        algo=config["algo"],
        dataset=config["dataset"],
        seed=config["seed"],
        offline_steps=config["steps"],
        steps=online_steps,
        buffer_size=online_steps,
        mix=mix,
        eval_every=config["eval_every"],
        offline_eval_every=config["eval_every"],
        eval_episodes=config["eval_episodes"],
        final_eval_episodes=config["final_eval_episodes"],
        checkpoint_every=config["checkpoint_every"],
        threads=config["threads"],
        device=config["device"],
        progress=False,
        out=config["out"],
        algo_config=config["algo_config"],
    )
    return finetune(cfg, resume=True)


def _submit_local(
    configs: list[dict[str, Any]], workers: int
) -> Iterable[tuple[int, dict[str, Any]]]:
    # spawn, not fork: a forked child would inherit torch's thread pools and locks.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_cell, c): i for i, c in enumerate(configs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def ray_resources(spec: GridSpec) -> dict[str, float]:
    """What each cell asks Ray for: one CPU, and ``gpus_per_cell`` of a GPU on a GPU device."""
    gpu = spec.device.split(":")[0] == "cuda"
    return {"num_cpus": 1, "num_gpus": spec.gpus_per_cell if gpu else 0}


def _submit_ray(
    configs: list[dict[str, Any]], address: str | None, resources: dict[str, float]
) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the Ray executor needs `pip install 'offrl[ray]'`") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])(run_cell)
        refs = {task.remote(c): i for i, c in enumerate(configs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield refs[done[0]], ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def load_grid(out: str | Path) -> GridSpec:
    """The protocol of the grid in ``out`` (``grid.json``)."""
    return GridSpec.from_dict(json.loads((Path(out) / "grid.json").read_text()))


def run_grid(
    spec: GridSpec,
    out: str | Path,
    executor: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    log: Callable[[str], None] = print,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run every unfinished cell of ``spec`` into ``out``; returns the grid status.

    ``out/grid.json`` fixes the protocol: re-running a grid with a different protocol in the
    same directory is refused (mixing budgets would make the table dishonest), but new
    algorithms, datasets or seeds may be added to the lists. Only the cells of ``spec``'s own
    lists run; the manifest (and so the report) keeps every cell ever added, so a grid can be
    run in parts -- cheap algorithms first, say, to have a table early. ``dry_run`` writes the
    manifest and logs the cells that would run, and runs none.
    """
    requested = spec
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "grid.json"
    if manifest.exists():
        spec = _merge_spec(load_grid(out), spec, out)
    atomic_write_bytes(manifest, json.dumps(spec.to_dict(), indent=2).encode())

    status = _read_status(out)
    all_cells = grid_cells(spec)
    finished = {c for c in all_cells if (c.run_dir(out) / "final.json").exists()}
    done = {c.key: {**status.get(c.key, {}), "status": "done"} for c in finished}
    status = _update_status(out, done)
    cells = [
        c
        for c in all_cells
        if c.algo in requested.algos
        and c.dataset in requested.datasets
        and c.seed in requested.seeds
    ]
    todo = [c for c in cells if c not in finished]
    log(f"{len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run ({executor})")
    if dry_run:
        for c in todo:
            log(f"[to run] {c.key}")
        return {"cells": len(cells), "ran": 0, "skipped": [], "failed": [], "status": status}
    configs = [_cell_config(spec, c, out) for c in todo]
    if executor == "local":
        results = _submit_local(configs, workers)
    elif executor == "ray":
        results = _submit_ray(configs, ray_address, ray_resources(spec))
    else:
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    skipped = []
    for i, result in results:
        cell = todo[i]
        score = (result.get("final") or {}).get("normalized_score")
        detail = f"score {score:.1f}" if score is not None else result.get("error", "")
        log(f"[{result['status']}] {cell.key} ({result['seconds']:.0f} s) {detail}")
        if result["status"] == "skipped":  # its outcome is the other process's to record
            skipped.append(cell.key)
        else:
            entry = {k: v for k, v in result.items() if k != "final"}
            status = _update_status(out, {cell.key: entry})
    status = _read_status(out)
    failed = sorted(k for k, v in status.items() if v.get("status") == "failed")
    return {
        "cells": len(cells),
        "ran": len(todo) - len(skipped),
        "skipped": skipped,
        "failed": failed,
        "status": status,
    }


RESULT_FILES = ("config.json", "metrics.jsonl", "command.txt", "error.txt", "final.json")
"""A cell's results: all that the report reads, without checkpoints or figures (``final.json``
last, so that a copy with ``final.json`` is complete)."""


def run_dirs(out: str | Path, spec: GridSpec) -> Iterator[tuple[Cell, Path]]:
    """Every ``OUT/<dataset>/<name>/s<seed>/`` directory of the grid's datasets, whether
    ``<name>`` is one of its algorithms or an external run (d3rlpy's columns), finished or not."""
    out = Path(out)
    for ds in spec.datasets:
        ds_dir = Cell("_", ds, 0).run_dir(out).parent.parent
        if not ds_dir.is_dir():
            continue
        for algo_dir in sorted(d for d in ds_dir.iterdir() if d.is_dir()):
            for run in sorted(algo_dir.glob("s*"), key=lambda p: p.name):
                if run.is_dir() and run.name[1:].isdigit():
                    yield Cell(algo_dir.name, ds, int(run.name[1:])), run


def export_results(src: str | Path, dest: str | Path) -> dict[str, list[str]]:
    """Copy the results of the grid in ``src`` into ``dest``, without checkpoints.

    ``dest`` gets the manifest (``grid.json``, merged with one already there; a different
    protocol is refused), the status of the cells copied, and :data:`RESULT_FILES` of every
    finished or failed cell -- a few KB per cell, small enough to commit next to a report.
    ``offrl bench report dest`` then gives the same table as on ``src``.

    It works the other way too: exporting such a copy into a new grid directory restores the
    grid on a fresh machine, and the next ``offrl bench run`` there re-runs only the cells the
    copy lacks. Cells still training in ``src`` are left out (their checkpoints stay behind);
    a cell already finished in ``dest``, or training there (its lock held), is kept, not
    overwritten.

    Returns ``{"copied": [...], "kept": [...]}``, cell keys.
    """
    src, dest = Path(src), Path(dest)
    spec = load_grid(src)
    if (dest / "grid.json").exists():
        spec = _merge_spec(load_grid(dest), spec, dest)
    dest.mkdir(parents=True, exist_ok=True)
    status = _read_status(src)
    copied: list[str] = []
    kept: list[str] = []
    for cell, run in run_dirs(src, spec):
        if not (run / "final.json").exists() and not (run / "error.txt").exists():
            continue
        target = dest / run.relative_to(src)
        if (target / "final.json").exists():
            kept.append(cell.key)
            continue
        with contextlib.ExitStack() as held:
            if (target / ".lock").exists() and not held.enter_context(claim(target / ".lock")):
                # Training in dest right now (a failed cell re-run by another grid process):
                # its files are that run's, not to be replaced by the earlier failure's.
                kept.append(cell.key)
                continue
            target.mkdir(parents=True, exist_ok=True)
            for name in RESULT_FILES:
                if (run / name).exists():
                    atomic_write_bytes(target / name, (run / name).read_bytes())
                else:  # e.g. the error.txt of an earlier failure, now finished
                    (target / name).unlink(missing_ok=True)
        copied.append(cell.key)
    atomic_write_bytes(dest / "grid.json", json.dumps(spec.to_dict(), indent=2).encode())
    _update_status(dest, {k: status[k] for k in copied if k in status})
    return {"copied": copied, "kept": kept}


def _merge_spec(old: GridSpec, new: GridSpec, out: Path) -> GridSpec:
    """``old`` (the manifest in ``out``) with ``new``'s algorithms, datasets and seeds added;
    refuses a different protocol, since mixing budgets would make the table dishonest."""
    protocol = (
        "steps",
        "eval_every",
        "eval_episodes",
        "final_eval_episodes",
        "threads",
        "augment",
        "augment_space",
        "online_steps",
        "online_mix",
    )
    changed = [k for k in protocol if getattr(old, k) != getattr(new, k)]
    if changed:
        raise ValueError(f"{out} holds a grid with different {changed}: use another directory")
    for algo, cfg in old.algo_config.items():
        if new.algo_config.get(algo, cfg) != cfg:
            raise ValueError(f"{out}: algo_config of {algo!r} differs from the grid's")
    both = set(old.algos) & set(new.algos)
    for algo in sorted(both):
        if (algo in old.task_defaults) != (algo in new.task_defaults):
            raise ValueError(f"{out}: task_defaults of {algo!r} differs from the grid's")
    return dataclasses.replace(
        new,
        algos=_union(old.algos, new.algos),
        datasets=_union(old.datasets, new.datasets),
        seeds=_union(old.seeds, new.seeds),
        algo_config={**old.algo_config, **new.algo_config},
        task_defaults=_union(old.task_defaults, new.task_defaults),
    )


def _union(a: list[Any], b: list[Any]) -> list[Any]:
    return list(dict.fromkeys([*a, *b]))


def _read_status(out: Path) -> dict[str, Any]:
    path = out / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _update_status(out: Path, entries: dict[str, Any]) -> dict[str, Any]:
    # Read-modify-write under a (blocking) lock: another grid process on this directory may
    # be recording its own cells.
    with claim(out / ".status.lock", wait=True):
        status = {**_read_status(out), **entries}
        atomic_write_bytes(
            out / "status.json", json.dumps(status, indent=2, sort_keys=True).encode()
        )
    return status
