"""Side-by-side training speed of offrl and d3rlpy 2.8.1: gradient updates per second.

Run from the repository root with offrl's own interpreter, after ``benchmarks/d3rlpy/setup.sh``::

    bash benchmarks/d3rlpy/setup.sh
    .venv/bin/python benchmarks/compare_speed.py --skip-missing

For every algorithm pair in ``PAIRS`` it alternates ``offrl bench speed`` and
``benchmarks/d3rlpy/speed.py`` (in the d3rlpy venv) for ``--rounds`` rounds, in ABBA order so
that a slow drift of the (shared) machine hits both libraries alike, and keeps medians. Both
sides use the same synthetic data shape (obs 17, action 6, 100k transitions), two hidden layers
of 256, batch 256, the same thread count, and time sampling plus the update. The ratio
offrl/d3rlpy is the figure that matters; absolute rates drift with the machine's load.

Writes ``benchmarks/results/speed.json`` (all raw figures) and ``benchmarks/results/SPEED.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from machine import cpu_model, cpu_times, git_commit, load_average, wait_for_quiet

# offrl algorithm name -> d3rlpy algorithm name (a --algo choice of benchmarks/d3rlpy/speed.py).
# Add a line here to benchmark another algorithm.
PAIRS: dict[str, str] = {
    "td3bc": "td3plusbc",
    "bc": "bc",
    "iql": "iql",
    "cql": "cql",
    "awac": "awac",
    "crr": "crr",
    "bcq": "bcq",
    "bear": "bear",
}

# offrl config overrides that make a pair do the same work as d3rlpy's side (which uses two
# hidden layers of 256 for every network and batch 256): BCQ's and BEAR's official defaults
# are wider (VAE 750, BCQ actor/critics 400-300) and BCQ's batch is 100.
OFFRL_SETS: dict[str, list[str]] = {
    "bcq": ["batch_size=256", "hidden=[256,256]", "vae_hidden=[256,256]"],
    "bear": ["vae_hidden=[256,256]"],
}

ROOT = Path(__file__).resolve().parent.parent
D3RLPY_PYTHON = ROOT / "benchmarks" / ".venv-d3rlpy" / "bin" / "python"
D3RLPY_SCRIPT = ROOT / "benchmarks" / "d3rlpy" / "speed.py"
SETUP_SCRIPT = "benchmarks/d3rlpy/setup.sh"
# Other processes keeping this many cores busy make a timing meaningless on a 2-core machine:
# torch's worker threads then wait on each other and slow down many-fold. (An idle machine
# shows 0.00-0.05 here; a short burst of someone's test run during a 30 s run shows 0.2.)
BUSY_CORES = 0.15


class RunFailed(Exception):
    """A benchmark subprocess exited non-zero, timed out, or printed no JSON object."""

    def __init__(self, cmd: list[str], reason: str, output: str) -> None:
        super().__init__(f"{shlex.join(cmd)}: {reason}")
        self.cmd = cmd
        self.reason = reason
        self.output = output


@dataclass
class AlgoResult:
    offrl_algo: str
    d3rlpy_algo: str
    status: str = "ok"  # "ok", "missing" (offrl side failed) or "failed" (d3rlpy side failed)
    error: str | None = None
    offrl_runs: list[dict[str, Any]] = field(default_factory=list)
    d3rlpy_runs: list[dict[str, Any]] = field(default_factory=list)

    def _median(self, runs: list[dict[str, Any]], key: str) -> float | None:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    @property
    def offrl_updates_per_s(self) -> float | None:
        return self._median(self.offrl_runs, "updates_per_s")

    @property
    def d3rlpy_updates_per_s(self) -> float | None:
        return self._median(self.d3rlpy_runs, "updates_per_s")

    @property
    def ratio(self) -> float | None:
        """median offrl rate / median d3rlpy rate."""
        offrl, d3 = self.offrl_updates_per_s, self.d3rlpy_updates_per_s
        return offrl / d3 if offrl and d3 else None

    @property
    def paired_ratios(self) -> list[float]:
        """offrl/d3rlpy within each round (the two runs of a round are adjacent in time)."""
        return [
            float(o["updates_per_s"]) / float(d["updates_per_s"])
            for o, d in zip(self.offrl_runs, self.d3rlpy_runs, strict=False)
            if o.get("updates_per_s") and d.get("updates_per_s")
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "offrl_algo": self.offrl_algo,
            "d3rlpy_algo": self.d3rlpy_algo,
            "status": self.status,
            "error": self.error,
            "offrl_updates_per_s": self.offrl_updates_per_s,
            "d3rlpy_updates_per_s": self.d3rlpy_updates_per_s,
            "ratio": self.ratio,
            "paired_ratios": self.paired_ratios,
            "offrl_flops_per_update": self._median(self.offrl_runs, "flops_per_update"),
            "offrl_bound_fraction": self._median(self.offrl_runs, "bound_fraction"),
            "offrl_matmul_gflops": self._median(self.offrl_runs, "matmul_gflops"),
            "offrl_runs": self.offrl_runs,
            "d3rlpy_runs": self.d3rlpy_runs,
        }


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object in ``text`` that starts a line and runs to the end of the output.

    Handles one-line and pretty-printed objects, after any log lines a library printed.
    """
    decoder = json.JSONDecoder()
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    for start in reversed(starts):
        if not text.startswith("{", start):
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and not text[end:].strip():
            return value
    return None


def run_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in the repository root; return the JSON object it printed.

    Adds ``wall_s`` and ``others_cores_during``: the cores other processes (not this run, not
    this script) kept busy on average while it ran, from /proc/stat less the run's own CPU time.
    """
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    busy0, child0, t0 = _busy_seconds(), _children_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(cmd, f"timed out after {timeout:.0f} s", _text(exc.stderr)) from exc
    except OSError as exc:
        raise RunFailed(cmd, f"could not start: {exc}", "") from exc
    wall = time.perf_counter() - t0
    busy1, child1 = _busy_seconds(), _children_cpu_seconds()
    if proc.returncode != 0:
        raise RunFailed(cmd, f"exit status {proc.returncode}", proc.stderr + proc.stdout)
    result = last_json_object(proc.stdout)
    if result is None or "updates_per_s" not in result:
        raise RunFailed(cmd, "printed no JSON object with 'updates_per_s'", proc.stdout)
    result["wall_s"] = wall
    result["others_cores_during"] = (
        None
        if busy0 is None or busy1 is None
        else max(0.0, (busy1 - busy0) - (child1 - child0)) / wall
    )
    return result


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (/proc/stat), or None off Linux."""
    times = cpu_times()
    return None if times is None else times[0] / os.sysconf("SC_CLK_TCK")


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, n_lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n_lines:])


def offrl_command(args: argparse.Namespace, algo: str) -> list[str]:
    return [
        *shlex.split(args.offrl_cmd),
        "bench",
        "speed",
        "--algo",
        algo,
        "--threads",
        str(args.threads),
        "--json",
        *[arg for item in OFFRL_SETS.get(algo, []) for arg in ("--set", item)],
        *shlex.split(args.offrl_args),
    ]


# glibc settings equal to what offrl applies in-process (offrl.runtime.tune_allocator), for
# d3rlpy through the environment: --d3rlpy-tuned-malloc measures d3rlpy with the same allocator.
TUNED_MALLOC_ENV = ["MALLOC_MMAP_THRESHOLD_=33554432", "MALLOC_TRIM_THRESHOLD_=1073741824"]


def d3rlpy_command(args: argparse.Namespace, algo: str) -> list[str]:
    return [
        *(["env", *TUNED_MALLOC_ENV] if args.d3rlpy_tuned_malloc else []),
        str(D3RLPY_PYTHON.relative_to(ROOT)),
        str(D3RLPY_SCRIPT.relative_to(ROOT)),
        "--algo",
        algo,
        "--threads",
        str(args.threads),
        "--json",
        *shlex.split(args.d3rlpy_args),
    ]


def _repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it (no symlink resolving)."""
    absolute = Path(os.path.abspath(path))
    return str(absolute.relative_to(ROOT)) if absolute.is_relative_to(ROOT) else str(path)


def default_offrl_cmd() -> str:
    """The ``offrl`` script beside this interpreter (the repo's .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "offrl"
    if beside.exists():
        return shlex.quote(str(beside))
    return shutil.which("offrl") or "offrl"


def bench_pair(args: argparse.Namespace, offrl_algo: str, d3rlpy_algo: str) -> AlgoResult:
    result = AlgoResult(offrl_algo, d3rlpy_algo)
    for rnd in range(args.rounds):
        # ABBA order: offrl first in even rounds, d3rlpy first in odd ones.
        order = ("offrl", "d3rlpy") if rnd % 2 == 0 else ("d3rlpy", "offrl")
        for side in order:
            if side == "offrl":
                cmd, runs = offrl_command(args, offrl_algo), result.offrl_runs
            else:
                cmd, runs = d3rlpy_command(args, d3rlpy_algo), result.d3rlpy_runs
            try:
                run = run_quiet(args, cmd)
            except RunFailed as exc:
                # "missing": offrl never ran it (e.g. the algorithm is not registered yet).
                result.status = "missing" if side == "offrl" and not result.offrl_runs else "failed"
                result.error = f"{exc}\n{_tail(exc.output)}"
                return result
            run["round"] = rnd
            run["command"] = shlex.join(cmd)
            runs.append(run)
            flag = "  (machine busy: other processes took cores)" if run["contended"] else ""
            print(
                f"  {side:6s} {offrl_algo if side == 'offrl' else d3rlpy_algo}: "
                f"{float(run['updates_per_s']):.1f} updates/s{flag}",
                file=sys.stderr,
                flush=True,
            )
    return result


def run_quiet(args: argparse.Namespace, cmd: list[str]) -> dict[str, Any]:
    """``run_json`` once the machine is quiet; redone (``--retry-busy``) if it was not."""
    attempts = 0
    while True:
        attempts += 1
        others_before = wait_for_quiet(args.quiet_wait, BUSY_CORES) if args.quiet_wait > 0 else None
        run = run_json(cmd, args.timeout)
        during = run["others_cores_during"]
        # speed.py (d3rlpy side) also flags its own timing windows that lost CPU time.
        contended = (during is not None and during >= BUSY_CORES) or bool(
            run.get("contended_repeats")
        )
        if contended and attempts <= args.retry_busy:
            print(
                f"  busy machine ({during or 0.0:.2f} cores taken by others): running again",
                file=sys.stderr,
                flush=True,
            )
            continue
        run.update(others_cores_before=others_before, contended=contended, attempts=attempts)
        return run


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_offrl_env": package_version("torch"),
        "offrl": package_version("offrl"),
        "threads": args.threads,
        "load_average_start": load_average(),
    }


def _fmt_rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _fmt_flops(value: float | None) -> str:
    if value is None:
        return "–"
    for scale, unit in ((1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} FLOP"


def _fmt_fraction(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def render_markdown(report: dict[str, Any], results: list[AlgoResult]) -> str:
    machine = report["machine"]
    lines = [
        "# Training speed: offrl vs d3rlpy 2.8.1",
        "",
        f"Measured {report['date']} on {machine['cpu']} ({machine['cpu_count']} cores), "
        f"{machine['threads']} torch threads, offrl commit {report['git_commit'] or '?'}. "
        f"Medians of {report['rounds']} alternating round(s) per library; "
        "the ratio is median offrl / median d3rlpy (higher is better for offrl).",
        "",
        "Same synthetic data shape on both sides (obs dim 17, action dim 6, 100 000 "
        "transitions), two hidden layers of 256, batch 256; one update = sampling a batch "
        "plus one gradient step of the algorithm. Absolute rates drift with the load of the "
        "(shared) machine; compare ratios.",
        "",
        "offrl runs with its glibc allocator settings (`offrl.runtime.tune_allocator`); d3rlpy "
        + (
            "with the same settings, through the environment (`--d3rlpy-tuned-malloc`)."
            if report.get("d3rlpy_tuned_malloc")
            else "with glibc's defaults, as users run it."
        ),
        "",
        "| algorithm | offrl updates/s | d3rlpy updates/s | ratio "
        "| offrl FLOP/update | fraction of matmul bound |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        name = f"{res.offrl_algo} / {res.d3rlpy_algo}"
        if res.status == "missing":
            lines.append(f"| {name} | not available | – | – | – | – |")
            continue
        if res.status == "failed" and not res.d3rlpy_runs:
            lines.append(f"| {name} | {_fmt_rate(res.offrl_updates_per_s)} | failed | – | – | – |")
            continue
        data = res.to_json()
        ratio = "–" if res.ratio is None else f"**{res.ratio:.2f}×**"
        if any(r.get("contended") for r in res.offrl_runs + res.d3rlpy_runs):
            ratio += " †"
        lines.append(
            f"| {name} | {_fmt_rate(res.offrl_updates_per_s)} "
            f"| {_fmt_rate(res.d3rlpy_updates_per_s)} | {ratio} "
            f"| {_fmt_flops(data['offrl_flops_per_update'])} "
            f"| {_fmt_fraction(data['offrl_bound_fraction'])} |"
        )
    gflops = [r.to_json()["offrl_matmul_gflops"] for r in results if r.offrl_runs]
    gflops = [g for g in gflops if g is not None]
    lines.append("")
    if gflops:
        lines.append(
            f"Matmul bound: offrl measured {statistics.median(gflops):.1f} GFLOP/s for a dense "
            "matmul on this machine; FLOP/update and the fraction of that bound reached are "
            "as reported by `offrl bench speed`."
        )
        lines.append("")
    if any(r.get("contended") for res in results for r in res.offrl_runs + res.d3rlpy_runs):
        lines.append(
            f"† At least one run of this row shared the machine with other processes (they "
            f"kept ≥ {BUSY_CORES} cores busy even after retries): take it with caution; "
            "`others_cores_during` in speed.json has the figures."
        )
        lines.append("")
    problems = [r for r in results if r.status != "ok"]
    if problems:
        lines.append("Not compared:")
        lines.append("")
        for res in problems:
            first = (res.error or "").splitlines()[0] if res.error else ""
            lines.append(f"- {res.offrl_algo} / {res.d3rlpy_algo} ({res.status}): `{first}`")
        lines.append("")
    lines += [
        "## Reproduce",
        "",
        "```bash",
        f"bash {SETUP_SCRIPT}",
        report["command"],
        "```",
        "",
        "Single runs, as this script issues them:",
        "",
        "```bash",
    ]
    for res in results:
        lines.append(report["commands"][res.offrl_algo]["offrl"])
        lines.append(report["commands"][res.offrl_algo]["d3rlpy"])
    lines += ["```", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare offrl and d3rlpy 2.8.1 gradient updates per second."
    )
    parser.add_argument(
        "--algos",
        default=",".join(PAIRS),
        help=f"comma-separated offrl algorithm names (default: all of {','.join(PAIRS)})",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per library")
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="report and skip an algorithm whose run fails (e.g. not in offrl yet)",
    )
    parser.add_argument("--offrl-cmd", default=default_offrl_cmd(), help="offrl executable")
    parser.add_argument("--offrl-args", default="", help="extra arguments for `offrl bench speed`")
    parser.add_argument(
        "--d3rlpy-args",
        default="",
        help="extra arguments for benchmarks/d3rlpy/speed.py (e.g. '--seconds 20')",
    )
    parser.add_argument(
        "--d3rlpy-tuned-malloc",
        action="store_true",
        help="run d3rlpy with the glibc malloc thresholds offrl sets for itself "
        "(offrl.runtime), to separate that gain from the rest",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument(
        "--retry-busy",
        type=int,
        default=2,
        help="run again (up to this many times) when other processes kept "
        f">= {BUSY_CORES} cores busy during a run",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run wait up to this many seconds for other processes to leave the "
        "cores idle (0: don't wait)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=ROOT / "benchmarks" / "results", help="output folder"
    )
    args = parser.parse_args(argv)
    args.algo_list = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in args.algo_list if a not in PAIRS]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; known: {', '.join(PAIRS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not D3RLPY_PYTHON.exists():
        print(f"{D3RLPY_PYTHON} not found: run `bash {SETUP_SCRIPT}` first", file=sys.stderr)
        return 2

    command = shlex.join([_repo_relative(sys.executable), _repo_relative(__file__), *sys.argv[1:]])
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "rounds": args.rounds,
        "d3rlpy_tuned_malloc": args.d3rlpy_tuned_malloc,
        "machine": machine_info(args),
        "commands": {
            a: {
                "offrl": shlex.join(offrl_command(args, a)),
                "d3rlpy": shlex.join(d3rlpy_command(args, PAIRS[a])),
            }
            for a in args.algo_list
        },
    }

    results: list[AlgoResult] = []
    for algo in args.algo_list:
        print(f"== {algo} vs d3rlpy {PAIRS[algo]}", file=sys.stderr, flush=True)
        res = bench_pair(args, algo, PAIRS[algo])
        results.append(res)
        if res.status != "ok":
            print(f"  {res.status}: {res.error}", file=sys.stderr, flush=True)
            if not args.skip_missing:
                print("stopping (use --skip-missing to go on)", file=sys.stderr)
                return 1
        elif res.ratio is not None:
            print(f"  ratio offrl/d3rlpy: {res.ratio:.2f}", file=sys.stderr, flush=True)

    report["machine"]["load_average_end"] = load_average()
    d3_torch = {str(r["torch"]) for res in results for r in res.d3rlpy_runs if r.get("torch")}
    report["machine"]["torch_d3rlpy_env"] = ", ".join(sorted(d3_torch)) or None
    report["results"] = [res.to_json() for res in results]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / "speed.json"
    md_path = args.out_dir / "SPEED.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report, results), encoding="utf-8")
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    for res in results:
        ratio = "-" if res.ratio is None else f"{res.ratio:.2f}"
        print(
            f"{res.offrl_algo:8s} offrl {_fmt_rate(res.offrl_updates_per_s):>8s}  "
            f"d3rlpy {_fmt_rate(res.d3rlpy_updates_per_s):>8s}  ratio {ratio}  [{res.status}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
