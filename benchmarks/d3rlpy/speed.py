"""Gradient updates per second of d3rlpy 2.8.1 on synthetic data (the baseline for offrl).

Runs inside ``benchmarks/.venv-d3rlpy`` (made by ``benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/speed.py --algo td3plusbc --json

What one timed step is: exactly the body of d3rlpy's own ``QLearningAlgoBase.fitter`` loop,
i.e. ``dataset.sample_transition_batch(batch_size)`` (d3rlpy's per-transition Python picking
with ``BasicTransitionPicker`` and ``TransitionMiniBatch.from_transitions``) followed by
``algo.update(batch)`` (numpy -> torch conversion plus the algorithm's update), plus the
per-step loss bookkeeping ``fit`` does. Only d3rlpy's logger/tqdm calls are left out (a few
microseconds a step). Setup (dataset, networks) is untimed, as is ``--warmup``. ``--via-fit``
times d3rlpy's ``fit()`` itself instead, as a cross-check.

The rate is the median over ``--repeats`` windows that share ``--seconds``. Before each window
the script waits for other processes to leave the cores idle (``--quiet-wait``); a window in
which they took part of our cores anyway is marked ``contended`` (and redone with
``--retry-contended``): on a 2-core machine torch's threads then slow down many-fold.

Data: seeded synthetic continuous-control data shaped like a MuJoCo locomotion dataset
(obs dim 17, action dim 6, 100 000 transitions in episodes of 1000 steps that end in
timeouts, no terminals). Networks: d3rlpy's defaults, i.e. ``VectorEncoderFactory`` with
hidden units [256, 256] for every actor/critic/value/VAE network; batch size 256 for every
algorithm; every other hyper-parameter is the algorithm's default d3rlpy config (BEAR's
40 000-step actor warm-up phase is skipped, so its steady state is timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# benchmarks/machine.py is shared with compare_speed.py (standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from machine import cpu_model, load_average, wait_for_quiet  # noqa: E402

OBS_DIM = 17
ACT_DIM = 6
N_TRANSITIONS = 100_000
EPISODE_LEN = 1000
BATCH_SIZE = 256
HIDDEN = [256, 256]
# A repeat whose process CPU seconds per wall second fall below this fraction of its thread
# count shared its cores with another process (torch's threads then slow down many-fold).
CONTENDED_BELOW = 0.85


def _configs() -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """d3rlpy config class and the overrides (beyond batch size and encoders) per algorithm."""
    import d3rlpy

    algos = d3rlpy.algos
    return {
        "td3plusbc": (algos.TD3PlusBCConfig, {}),
        "bc": (algos.BCConfig, {}),
        "iql": (algos.IQLConfig, {}),
        "cql": (algos.CQLConfig, {}),
        "awac": (algos.AWACConfig, {}),
        "crr": (algos.CRRConfig, {}),
        # d3rlpy's BCQ takes its n_action_samples (default 100) proposals in the *target* as
        # well as for acting; the paper and the official code use 10 in the target (offrl too).
        # Equal work per update: 10.
        "bcq": (algos.BCQConfig, {"n_action_samples": 10}),
        # BEAR spends its first 40 000 steps (of ~1M) in a cheaper actor warm-up phase; time
        # the steady state that dominates a run instead.
        "bear": (algos.BEARConfig, {"warmup_steps": 0}),
    }


ALGOS = ("td3plusbc", "bc", "iql", "cql", "awac", "crr", "bcq", "bear")


def make_dataset(seed: int = 0) -> Any:
    """Seeded synthetic dataset as a d3rlpy ``MDPDataset`` (a ``ReplayBuffer``)."""
    from d3rlpy.dataset import MDPDataset

    rng = np.random.RandomState(seed)
    observations = rng.randn(N_TRANSITIONS, OBS_DIM).astype(np.float32)
    actions = rng.uniform(-1.0, 1.0, size=(N_TRANSITIONS, ACT_DIM)).astype(np.float32)
    rewards = rng.randn(N_TRANSITIONS, 1).astype(np.float32)
    terminals = np.zeros(N_TRANSITIONS, dtype=np.float32)
    timeouts = np.zeros(N_TRANSITIONS, dtype=np.float32)
    timeouts[EPISODE_LEN - 1 :: EPISODE_LEN] = 1.0
    return MDPDataset(
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminals=terminals,
        timeouts=timeouts,
    )


def _encoder_overrides(config_cls: Callable[..., Any]) -> dict[str, Any]:
    """Set every ``*encoder_factory`` field of a config to an explicit [256, 256] MLP."""
    import dataclasses

    from d3rlpy.models.encoders import VectorEncoderFactory

    fields = [f.name for f in dataclasses.fields(config_cls)]  # type: ignore[arg-type]
    return {
        name: VectorEncoderFactory(hidden_units=list(HIDDEN))
        for name in fields
        if name.endswith("encoder_factory")
    }


def build_algo(name: str, dataset: Any) -> tuple[Any, dict[str, Any]]:
    """Create the algorithm and its networks the way ``fit`` does before its loop."""
    from d3rlpy.algos.utility import (
        assert_action_space_with_dataset,
        build_scalers_with_transition_picker,
    )

    config_cls, overrides = _configs()[name]
    kwargs: dict[str, Any] = {"batch_size": BATCH_SIZE, **_encoder_overrides(config_cls)}
    kwargs.update(overrides)
    algo = config_cls(**kwargs).create(device="cpu:0")

    assert_action_space_with_dataset(algo, dataset.dataset_info)
    build_scalers_with_transition_picker(algo, dataset)
    observation_shape = dataset.sample_transition().observation_signature.shape
    if len(observation_shape) == 1:
        observation_shape = observation_shape[0]
    algo.create_impl(observation_shape, dataset.dataset_info.action_size)
    _check_hidden_layers(algo)
    return algo, overrides


def _check_hidden_layers(algo: Any) -> None:
    """Fail loudly unless every encoder MLP in the algorithm is Linear(., 256) x 2."""
    from d3rlpy.models.torch.encoders import VectorEncoder, VectorEncoderWithAction

    n_encoders = 0
    for module in vars(algo.impl.modules).values():
        if not isinstance(module, torch.nn.Module):
            continue
        for sub in module.modules():
            if isinstance(sub, VectorEncoder | VectorEncoderWithAction):
                widths = [m.out_features for m in sub.modules() if isinstance(m, torch.nn.Linear)]
                if widths != HIDDEN:
                    raise RuntimeError(f"encoder hidden units {widths} != {HIDDEN}")
                n_encoders += 1
    if n_encoders == 0:
        raise RuntimeError("no d3rlpy vector encoder found")


def run_steps(algo: Any, dataset: Any, n_steps: int, epoch_loss: dict[str, list[float]]) -> float:
    """``n_steps`` iterations of the body of d3rlpy's ``fitter`` loop.

    Returns the seconds spent sampling (the rest of the loop is the update).
    """
    batch_size = algo.config.batch_size
    sampling = 0.0
    for _ in range(n_steps):
        t0 = time.perf_counter()
        batch = dataset.sample_transition_batch(batch_size)
        sampling += time.perf_counter() - t0
        loss = algo.update(batch)
        for key, val in loss.items():
            epoch_loss[key].append(val)
    return sampling


def timed_repeat(algo: Any, dataset: Any, seconds: float) -> dict[str, float]:
    """Run steps until ``seconds`` have passed; rate, split and CPU use of this repeat.

    ``cpu_per_wall`` is process CPU seconds per wall second: about the thread count when the
    process had the cores to itself, clearly less when another process competed for them.
    """
    epoch_loss: dict[str, list[float]] = defaultdict(list)
    steps = 0
    sampling = 0.0
    cpu0 = time.process_time()
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        sampling += run_steps(algo, dataset, 1, epoch_loss)
        steps += 1
        elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "steps": steps,
        "elapsed_s": elapsed,
        "updates_per_s": steps / elapsed,
        "sample_ms": 1e3 * sampling / steps,
        "update_ms": 1e3 * (elapsed - sampling) / steps,
        "cpu_per_wall": cpu / elapsed,
    }


def timed_fit(algo: Any, dataset: Any, seconds: float, rate_guess: float) -> dict[str, float]:
    """Time d3rlpy's own ``fit()`` for about ``seconds``: a cross-check of ``timed_repeat``.

    A callback stamps the clock after the first step and after the last, so the figure holds
    everything ``fit`` does per step (logger and tqdm bookkeeping included) and nothing else.
    """
    from d3rlpy.logging import NoopAdapterFactory

    n_steps = max(10, round(seconds * rate_guess))
    stamps: dict[int, float] = {}

    def callback(_algo: Any, _epoch: int, total_step: int) -> None:
        if total_step in (1, n_steps + 1):
            stamps[total_step] = time.perf_counter()

    cpu0 = time.process_time()
    algo.fit(
        dataset,
        n_steps=n_steps + 1,
        n_steps_per_epoch=n_steps + 1,
        with_timestamp=False,
        logger_adapter=NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
        callback=callback,
    )
    cpu = time.process_time() - cpu0
    elapsed = stamps[n_steps + 1] - stamps[1]
    return {
        "steps": n_steps,
        "elapsed_s": elapsed,
        "updates_per_s": n_steps / elapsed,
        "cpu_per_wall": cpu / elapsed,
    }


def measure_repeat(
    args: argparse.Namespace, algo: Any, dataset: Any, seconds: float, rate_guess: float
) -> dict[str, float | None]:
    """One timed repeat on a quiet machine, redone (``--retry-contended``) if it was not."""
    # Below this CPU use per wall second another process took part of our cores.
    min_cpu_per_wall = CONTENDED_BELOW * min(args.threads, os.cpu_count() or args.threads)
    attempts = 0
    while True:
        attempts += 1
        others = wait_for_quiet(args.quiet_wait, 0.15) if args.quiet_wait > 0 else None
        if args.via_fit:
            timing = timed_fit(algo, dataset, seconds, rate_guess)
        else:
            timing = timed_repeat(algo, dataset, seconds)
        contended = timing["cpu_per_wall"] < min_cpu_per_wall
        if not contended or attempts > args.retry_contended:
            return {**timing, "others_cores": others, "contended": contended, "attempts": attempts}


def _median_of(details: list[dict[str, float | None]], key: str) -> float | None:
    values = [v for d in details if (v := d.get(key)) is not None]
    return statistics.median(values) if values else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--algo", choices=ALGOS, default="td3plusbc")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="total timed seconds, split over repeats"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median is kept)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each repeat wait up to this many seconds for other processes to leave the "
        "cores idle (0: don't wait)",
    )
    parser.add_argument(
        "--retry-contended",
        type=int,
        default=0,
        help="redo a repeat up to this many times when another process took our cores",
    )
    parser.add_argument(
        "--via-fit",
        action="store_true",
        help="time d3rlpy's own fit() instead of its replicated loop body (a cross-check)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    real_stdout = sys.stdout
    # d3rlpy (structlog) and gym print to stdout; keep stdout for the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        import d3rlpy

        d3rlpy.seed(args.seed)
        np.random.seed(args.seed)
        dataset = make_dataset(args.seed)
        algo, overrides = build_algo(args.algo, dataset)

        t0 = time.perf_counter()
        run_steps(algo, dataset, max(1, args.warmup), defaultdict(list))
        rate_guess = max(1, args.warmup) / (time.perf_counter() - t0)
        per_repeat = args.seconds / args.repeats
        load_before = load_average()
        details = [
            measure_repeat(args, algo, dataset, per_repeat, rate_guess) for _ in range(args.repeats)
        ]
        repeats = [float(d["updates_per_s"] or 0.0) for d in details]

    result = {
        "library": "d3rlpy",
        "version": d3rlpy.__version__,
        "algo": args.algo,
        "updates_per_s": statistics.median(repeats),
        "threads": args.threads,
        "batch_size": algo.config.batch_size,
        "hidden": list(HIDDEN),
        "obs_dim": OBS_DIM,
        "act_dim": ACT_DIM,
        "n_transitions": N_TRANSITIONS,
        "repeats": repeats,
        "steps_timed": sum(int(d["steps"] or 0) for d in details),
        "sample_ms": _median_of(details, "sample_ms"),
        "update_ms": _median_of(details, "update_ms"),
        "repeat_details": details,
        "contended_repeats": sum(bool(d["contended"]) for d in details),
        "load_average": {"before": load_before, "after": load_average()},
        "warmup_steps": args.warmup,
        "seconds": args.seconds,
        "config_overrides": {"batch_size": BATCH_SIZE, **overrides},
        "timed": (
            "d3rlpy fit() itself"
            if args.via_fit
            else "dataset.sample_transition_batch + algo.update (d3rlpy fitter loop body)"
        ),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
            if k in os.environ
        },
    }
    if args.json:
        print(json.dumps(result), file=real_stdout)
    else:
        spread = ", ".join(f"{r:.1f}" for r in repeats)
        split = ""
        if result["sample_ms"] is not None:
            split = f"; sample {result['sample_ms']:.1f} ms + update {result['update_ms']:.1f} ms"
        print(
            f"d3rlpy {result['version']} {args.algo}: {result['updates_per_s']:.1f} updates/s "
            f"(median of {spread}; {args.threads} threads, batch {BATCH_SIZE}, "
            f"hidden {HIDDEN}{split}{' via fit()' if args.via_fit else ''})",
            file=real_stdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
