"""A/B update speed of two versions of offrl in one process, with interleaved timing windows.

BEFORE is the package at a git ref (``--before``, default ``289adf7``), copied out of git into a
temporary directory as the package ``offrl_before`` (its absolute imports rewritten to that
name). AFTER is the working tree's ``offrl`` or, with ``--after-ref``, another ref materialised
the same way as ``offrl_after`` (``--after-ref 289adf7`` gives an A/A run: the harness's own
noise). Both are imported side by side, so both run on the same interpreter, torch, threads and
machine state.

For every algorithm, each version builds it from its own registry (``get_algorithm``, default
config, ``EnvSpec((17,), 6)``, seed 0, the trainer's data hooks ``prepare_data`` /
``attach_data`` on the same seeded 100k-transition synthetic dataset as ``offrl bench speed``).
Each version draws a pool of batches with its own ``TensorSampler`` (seed 0); when the two pools
hold the same numbers, AFTER is handed BEFORE's very tensors (re-wrapped in its own ``Batch``),
so both sides update on identical memory. A timed update is ``algo.update(pool[i])``: sampling is
left out (it is the same ``index_select`` on both sides and is measured by
``offrl bench speed --sampling``).

After a warm-up, windows of the same number ``N`` of updates (``N`` chosen so a window lasts about
``--window-s``, a multiple of the update cycle, e.g. TD3+BC's ``policy_freq``) alternate
A, B, A, B, ... (``--order abba`` for A B B A ...); pair ``k`` is the ``k``-th window of each
side, on the same batches and at the same update count. The host drifts by tens of per cent, so
the figure to read is the per-pair ratio B/A: its median and [min, max]. Once per pair the fp32
256x256x256 matmul rate is measured, and with each version's FLOPs per update over one cycle
gives that pair's bound. The measuring tools (``offrl.bench.speed``'s matmul rate, synthetic
data and ``FlopCounter``) are the working tree's, for both sides;
``%bound`` is the median over pairs of ``rate * flops / matmul rate``.

Run from the repository root::

    .venv/bin/python benchmarks/ab_speed.py                         # every algorithm, 289adf7
    .venv/bin/python benchmarks/ab_speed.py --algos td3bc,iql --windows 10
    .venv/bin/python benchmarks/ab_speed.py --algos bc --after-ref 289adf7   # A/A check

Writes ``benchmarks/results/speed-runs/ab-<timestamp>.json`` (``--out``) with every window, and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from offrl.bench.speed import FlopCounter, _cpu_name, matmul_gflops, synthetic_dataset

ROOT = Path(__file__).resolve().parent.parent
_DATA_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
DEFAULT_BEFORE = "289adf7"
OBS_DIM, ACT_DIM, N_TRANSITIONS = 17, 6, 100_000

# "offrl.data.builtin" inside a string (importlib targets, ModuleNotFoundError.name checks).
_DOTTED = re.compile(r"(?<![\w.-])offrl(?=\.[A-Za-z_])")


# --------------------------------------------------------------------------------------------
# Materialising a version of the package under another name


def rewrite_source(source: str, name: str) -> str:
    """``source`` with every reference to the package ``offrl`` pointing at ``name`` instead:
    the identifier ``offrl`` (``import offrl``, ``from offrl.x import y``, ``offrl.__version__``)
    and dotted module paths in strings (``"offrl.data.builtin"``)."""
    edits: list[tuple[int, int, int, str]] = []  # (row, start col, end col, new text)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string == "offrl":
            edits.append((tok.start[0], tok.start[1], tok.end[1], name))
        elif tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            if tok.start[0] != tok.end[0]:  # multi-line string: rewrite line by line below
                for i, _ in enumerate(tok.string.splitlines()):
                    edits.append((tok.start[0] + i, -1, -1, ""))
                continue
            new = _DOTTED.sub(name, tok.string)
            if new != tok.string:
                edits.append((tok.start[0], tok.start[1], tok.end[1], new))
    lines = source.splitlines(keepends=True)
    for row, start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        line = lines[row - 1]
        if start < 0:
            lines[row - 1] = _DOTTED.sub(name, line)
        else:
            lines[row - 1] = line[:start] + new + line[end:]
    return "".join(lines)


def resolve_ref(ref: str) -> str:
    """The full commit hash of git ref ``ref`` in this repository."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def materialise(ref: str, name: str, into: Path) -> Path:
    """Extract ``offrl/`` at ``ref`` into ``into/<name>`` with its imports rewritten to
    ``name``; returns the package directory."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "offrl"],
        capture_output=True,
        check=True,
    ).stdout
    staging = into / f".{name}-src"
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
            tf.extractall(staging, filter="data")
        else:
            tf.extractall(staging)
    pkg = into / name
    shutil.move(str(staging / "offrl"), str(pkg))
    shutil.rmtree(staging)
    for path in pkg.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(rewrite_source(text, name), encoding="utf-8")
    return pkg


@dataclass
class Version:
    """One side of the comparison: the imported package and its public pieces."""

    label: str  # "before" / "after"
    name: str  # the package's import name
    ref: str  # the git ref, or "working tree"
    commit: str | None
    pkg: ModuleType
    get_algorithm: Any
    list_algorithms: Any
    EnvSpec: Any
    Dataset: Any
    Batch: Any
    TensorSampler: Any

    @classmethod
    def load(cls, label: str, name: str, ref: str, commit: str | None) -> Version:
        pkg = importlib.import_module(name)
        algos = importlib.import_module(f"{name}.algos")
        data = importlib.import_module(f"{name}.data")
        sampler = importlib.import_module(f"{name}.data.sampler")
        return cls(
            label=label,
            name=name,
            ref=ref,
            commit=commit,
            pkg=pkg,
            get_algorithm=getattr(pkg, "get_algorithm", None) or algos.get_algorithm,
            list_algorithms=getattr(pkg, "list_algorithms", None) or algos.list_algorithms,
            EnvSpec=getattr(pkg, "EnvSpec", None) or algos.EnvSpec,
            Dataset=data.Dataset,
            Batch=sampler.Batch,
            TensorSampler=sampler.TensorSampler,
        )


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Side:
    """One version's built algorithm, its batch pool and its figures."""

    version: Version
    algo: Any = None
    cycle: int = 1
    pool: list[Any] = field(default_factory=list)
    flops: float = 0.0
    rates: list[float] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    error: str | None = None

    def build(self, algo_name: str, arrays: dict[str, np.ndarray], pool: int, device: str) -> None:
        v = self.version
        try:
            cls = v.get_algorithm(algo_name)
        except KeyError:
            self.error = "not registered"
            return
        try:
            torch.manual_seed(0)
            np.random.seed(0)
            cfg = cls.config_class.from_dict({})
            self.algo = cls(v.EnvSpec((OBS_DIM,), ACT_DIM), cfg, seed=0, device=device)
            dataset = v.Dataset(**{k: a.copy() for k, a in arrays.items()})
            # The trainer's data hooks (%BC keeps its best episodes, AWR computes its returns
            # and reads them back through Batch.rows), as offrl.bench.speed calls them.
            data = self.algo.prepare_data(dataset)
            self.algo.attach_data(data)
            if hasattr(self.algo, "sampler_options"):
                extra = self.algo.sampler_options()
            else:  # versions before sampler_options
                extra = {"next_actions": bool(getattr(cls, "needs_next_actions", False))}
            sampler = v.TensorSampler(data, cfg.batch_size, seed=0, device=device, **extra)
            self.pool = [sampler.sample() for _ in range(pool)]
            self.cycle = max(1, int(getattr(cfg, "policy_freq", 1) or 1))
        except Exception as exc:  # noqa: BLE001 -- reported, the other side still runs
            self.error = f"build failed: {type(exc).__name__}: {exc}"
            self.algo = None
            traceback.print_exc(file=sys.stderr)

    @property
    def ok(self) -> bool:
        return self.algo is not None and self.error is None

    def run(self, start: int, n: int) -> float:
        """Updates per second of ``n`` updates on ``pool[start:]`` (cyclically)."""
        update, pool, p = self.algo.update, self.pool, len(self.pool)
        gc.collect()
        t0 = time.perf_counter()
        for i in range(start, start + n):
            update(pool[i % p])
        return n / (time.perf_counter() - t0)

    def count_flops(self, start: int) -> None:
        # The working tree's module-free counter, for both sides (FlopCounterMode's module
        # hooks cannot follow torch.autograd.grad, which EDAC calls through an nn.Module).
        with FlopCounter() as counter:
            for i in range(self.cycle):
                self.algo.update(self.pool[(start + i) % len(self.pool)])
        self.flops = counter.total / self.cycle


def share_batches(a: Side, b: Side) -> bool:
    """Hand ``b`` the very tensors of ``a``'s pool if both pools hold the same numbers."""
    if len(a.pool) != len(b.pool):
        return False
    for x, y in zip(a.pool, b.pool, strict=True):
        if len(x) != len(y):
            return False
        for tx, ty in zip(x, y, strict=True):
            if (tx is None) != (ty is None):
                return False
            if tx is not None and (tx.shape != ty.shape or not torch.equal(tx, ty)):
                return False
    b.pool = [b.version.Batch(*x) for x in a.pool]
    return True


def guarded(side: Side, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, recording an exception as the side's error (the other side goes on)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        side.error = f"update failed: {type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
        return None


def leaked_imports(before: Version, after: Version, tmp: Path) -> list[str]:
    """Modules of a materialised version that were not loaded from its copy (an import the
    rewrite missed would silently run the other version's code)."""
    problems = []
    for v in (before, after):
        if v.name == "offrl":
            continue
        for mod_name, mod in list(sys.modules.items()):
            if mod_name != v.name and not mod_name.startswith(v.name + "."):
                continue
            f = getattr(mod, "__file__", None)
            if f and not Path(f).resolve().is_relative_to(tmp.resolve()):
                problems.append(f"{mod_name} loaded from {f}")
    if after.name != "offrl" and "offrl" in sys.modules:
        problems.append("the working tree's offrl was imported by a materialised version")
    return problems


def bench_algo(name: str, a: Side, b: Side, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved windows of one algorithm (either side may be missing)."""
    sides = [s for s in (a, b) if s.ok]
    shared = share_batches(a, b) if len(sides) == 2 else False
    for s in sides:
        guarded(s, s.run, 0, args.warmup)
    sides = [s for s in sides if s.ok]
    for s in sides:
        guarded(s, s.count_flops, args.warmup)
    sides = [s for s in sides if s.ok]
    cycle = math.lcm(*(s.cycle for s in sides)) if sides else 1
    # Calibrate the window length: about window_s at the sides' (geometric) mean rate.
    calib = []
    for s in sides:
        r = guarded(s, s.run, args.warmup, max(cycle, 10))
        if r is not None:
            calib.append(r)
    sides = [s for s in sides if s.ok]
    n = 0
    if sides and calib:
        rate = math.exp(statistics.fmean(math.log(r) for r in calib))
        n = max(cycle, round(args.window_s * rate / cycle) * cycle)
    gflops: list[float] = []
    start0 = args.warmup + max(cycle, 10)
    for k in range(args.windows if n else 0):
        order = sides if (args.order == "abab" or k % 2 == 0) else sides[::-1]
        start = start0 + k * n
        for s in order:
            if s.ok:
                r = guarded(s, s.run, start, n)
                if r is not None:
                    s.rates.append(r)
        g = matmul_gflops(seconds=args.matmul_s, device=args.device)
        gflops.append(g)
        for s in order:
            if s.ok and len(s.fractions) < len(s.rates):
                s.fractions.append(s.rates[-1] * s.flops / (g * 1e9) if s.flops else 0.0)

    def side_dict(s: Side) -> dict[str, Any]:
        return {
            "version": s.version.label,
            "error": s.error,
            "updates_per_s": statistics.median(s.rates) if s.rates else None,
            "rates": s.rates,
            "flops_per_update": s.flops,
            "cycle": s.cycle,
            "bound_fraction": statistics.median(s.fractions) if s.fractions else None,
            "bound_fractions": s.fractions,
        }

    result: dict[str, Any] = {
        "algo": name,
        "window_updates": n,
        "shared_batches": shared,
        "matmul_gflops": gflops,
        "before": side_dict(a),
        "after": side_dict(b),
    }
    if a.rates and b.rates and not a.error and not b.error:
        ratios = [rb / ra for ra, rb in zip(a.rates, b.rates, strict=False)]
        result["pair_ratios"] = ratios
        result["ratio"] = statistics.median(ratios)
        result["status"] = "ok"
    elif b.rates and not b.error and a.error == "not registered":
        result["status"] = "new"
    elif a.rates and not a.error and b.error == "not registered":
        result["status"] = "removed"
    elif a.error == b.error == "not registered":
        result["status"] = "unknown algorithm"
    else:
        result["status"] = "failed"
    return result


# --------------------------------------------------------------------------------------------
# Reporting


def _fmt_rate(side: dict[str, Any]) -> str:
    return "—" if side["updates_per_s"] is None else f"{side['updates_per_s']:.1f}"


def _fmt_frac(side: dict[str, Any]) -> str:
    return "—" if side["bound_fraction"] is None else f"{100 * side['bound_fraction']:.1f}%"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| algorithm | before upd/s | after upd/s | ratio after/before (median [min, max]) "
        "| before %bound | after %bound |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in results:
        if r["status"] == "ok":
            q = r["pair_ratios"]
            ratio = f"{r['ratio']:.3f} [{min(q):.3f}, {max(q):.3f}]"
        elif r["status"] == "failed":
            errs = [r[k]["error"] for k in ("before", "after") if r[k]["error"]]
            ratio = "failed: " + "; ".join(e.replace("|", "/")[:80] for e in errs)
        else:
            ratio = r["status"]
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['algo']} | {_fmt_rate(b)} | {_fmt_rate(a)} | {ratio} "
            f"| {_fmt_frac(b)} | {_fmt_frac(a)} |"
        )
    return "\n".join(lines)


def _git(*cmd: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git ref of the baseline (A)")
    p.add_argument(
        "--after-ref",
        default=None,
        help="git ref for B instead of the working tree's offrl (same ref as --before: A/A)",
    )
    p.add_argument("--algos", default=None, help="comma-separated (default: all in AFTER)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window-s", type=float, default=1.0, help="seconds per timing window")
    p.add_argument("--windows", type=int, default=6, help="windows per side (= pairs)")
    p.add_argument("--warmup", type=int, default=50, help="untimed updates per side first")
    p.add_argument("--pool", type=int, default=256, help="pre-drawn batches, used cyclically")
    p.add_argument("--matmul-s", type=float, default=0.25, help="matmul bound per pair, seconds")
    p.add_argument("--order", choices=["abab", "abba"], default="abab")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON path (default: results/speed-runs/ab-*)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = dt.datetime.now()
    tmp = Path(tempfile.mkdtemp(prefix="offrl-ab-"))
    try:
        before_commit = resolve_ref(args.before)
        materialise(before_commit, "offrl_before", tmp)
        if args.after_ref:
            after_commit = resolve_ref(args.after_ref)
            materialise(after_commit, "offrl_after", tmp)
        sys.path.insert(0, str(tmp))
        before = Version.load("before", "offrl_before", args.before, before_commit)
        if args.after_ref:
            after = Version.load("after", "offrl_after", args.after_ref, after_commit)
        else:
            sys.path.insert(0, str(ROOT))
            try:
                after = Version.load("after", "offrl", "working tree", _git("rev-parse", "HEAD"))
            except Exception:
                traceback.print_exc()
                print(
                    "ab_speed: importing the working tree's offrl failed; "
                    "--after-ref REF compares against a commit instead",
                    file=sys.stderr,
                )
                return 2
        leaks = leaked_imports(before, after, tmp)
        for leak in leaks:
            print(f"ab_speed: warning: {leak}", file=sys.stderr)
        names = args.algos.split(",") if args.algos else list(after.list_algorithms())
        data = synthetic_dataset(N_TRANSITIONS, OBS_DIM, ACT_DIM)  # speed.py's numbers
        arrays = {f: getattr(data, f) for f in _DATA_FIELDS}
        results = []
        for name in names:
            name = name.strip()
            a, b = Side(before), Side(after)
            a.build(name, arrays, args.pool, args.device)
            b.build(name, arrays, args.pool, args.device)
            r = bench_algo(name, a, b, args)
            results.append(r)
            print(f"# {name}: {r['status']} {r.get('ratio', '')}", file=sys.stderr, flush=True)
            del a, b
            gc.collect()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    dirty = _git("status", "--porcelain", "--", "offrl")
    report = {
        "started": started.isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "before": {
            "ref": args.before,
            "commit": before_commit,
            "package": before.name,
        },
        "after": {
            "ref": args.after_ref or "working tree",
            "commit": after.commit,
            "package": after.name,
            "path": str(Path(after.pkg.__file__).parent) if after.name == "offrl" else None,
            "dirty": bool(dirty) if not args.after_ref else False,
        },
        "settings": {
            k: getattr(args, k)
            for k in ("threads", "window_s", "windows", "warmup", "pool", "matmul_s", "order")
        }
        | {"device": args.device, "obs_dim": OBS_DIM, "act_dim": ACT_DIM},
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "import_warnings": leaks,
        "results": results,
    }
    out = (
        Path(args.out)
        if args.out
        else (ROOT / "benchmarks" / "results" / "speed-runs" / f"ab-{started:%Y%m%d-%H%M%S}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"before {args.before} ({before_commit[:7]}) vs after "
        f"{args.after_ref or 'working tree'}; {args.threads} threads, "
        f"{args.windows} windows x ~{args.window_s}s each, {args.order}\n"
    )
    print(markdown(results))
    print(f"\nwrote {out}")
    return 0 if all(r["status"] != "failed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
