"""Model-based speed on a 1M-transition MuJoCo dataset: model training, rollouts, updates.

Measures, on the prepared ``hopper-medium-v0`` (1,000,000 transitions; built on first use):

1. **model training** -- seconds per gradient step of the 7 x (4 x 200) ensemble on batches of
   256 per member, and the seconds of one epoch (a full pass over the training split, Kit's
   epoch), measured over ``--model-steps`` steps and extrapolated to the epoch's step count;
2. **rollouts** -- seconds to roll 50,000 dataset states out for h = 5 steps with MOPO's
   initial policy (every member predicts: MOPO's penalty needs all of them), once with Hopper's
   termination rule (rollouts that end stop early) and once with none (all 250,000
   transitions: the worst case);
3. **updates** -- updates per second of MOPO, COMBO and MOBILE against their model-free learner
   (SAC, CQL, SAC), in alternating windows in this one process (A B A B ..., the host drifts),
   each from its defaults on the same prepared data (the learner with the model-based
   algorithm's network and batch sizes: COMBO's three layers), rollouts excluded (they run once per
   ``rollout_freq`` updates: item 2 gives their amortised cost). Each model-based algorithm's
   buffer is filled by one rollout first. The ratio per pair of windows is B/A; its median is
   reported with the fp32 256x256x256 matmul rate and the fraction of it each update reaches.

Run from the repository root (about 10 minutes on the project's 2-core machine)::

    .venv/bin/python benchmarks/model_based_speed.py [--threads 2] [--out FILE]

``--before REF`` measures item 1 alone, against offrl at git ref ``REF`` (materialised as the
package ``offrl_before`` by ``benchmarks/ab_speed.py``): both versions' ensembles, built from
the same seed, take alternating windows of ``--model-steps`` training steps on the same data
and the same indices (A B B A ...), and the ratio per pair of windows is reported::

    .venv/bin/python benchmarks/model_based_speed.py --before 558b52c --threads 1

It prints a markdown table and writes the raw numbers as JSON (default
``benchmarks/results/speed-runs/model-based-<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from offrl.algos import get_algorithm
from offrl.bench.speed import FlopCounter, matmul_gflops
from offrl.data import load_dataset
from offrl.data.normalization import ObsNormalizer, RewardTransform, preprocess
from offrl.data.sampler import TensorSampler
from offrl.dynamics import DynamicsConfig
from offrl.dynamics.fit import training_arrays
from offrl.train.trainer import spec_for

PAIRS = (("mopo", "sac"), ("combo", "cql"), ("mobile", "sac"))


def model_trainer(arrays: tuple[torch.Tensor, ...], package: str = "offrl") -> Any:
    """``step(idx)``: one training step of the default ensemble of ``package`` (``offrl``, or
    a materialised ``offrl_before``) on the rows ``idx`` ``[E, b]`` of ``arrays`` (``obs, act,
    targets, dones``), with the fit's optimiser; the ensemble starts from seed 0."""
    dynamics = importlib.import_module(f"{package}.dynamics")
    flat_adam = importlib.import_module(f"{package}.optim").FlatAdam
    cfg = dynamics.DynamicsConfig()
    obs, act, targets, dones = arrays
    torch.manual_seed(0)
    model = cfg.ensemble(obs.shape[1], act.shape[1])
    model.set_scaler(torch.cat([obs[:100_000], act[:100_000]], 1))
    optim = flat_adam(list(model.parameters()), lr=cfg.model_lr)

    def step(idx: torch.Tensor) -> None:
        loss, _ = model.loss(obs[idx], act[idx], targets[idx], dones[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    return step


def model_step_seconds(data: Any, steps: int) -> dict[str, float]:
    """Seconds per training step of the default ensemble (batches of 256 per member)."""
    cfg = DynamicsConfig()
    arrays = training_arrays(data)
    obs = arrays[0]
    train = model_trainer(arrays)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        train(torch.randint(0, len(obs), (cfg.model_ensemble, cfg.model_batch_size), generator=gen))

    for _ in range(5):
        step()
    with FlopCounter() as counter:
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - start) / steps
    train_size = len(obs) - min(int(len(obs) * cfg.model_holdout), cfg.model_max_holdout)
    epoch_steps = -(-train_size // cfg.model_batch_size)
    return {
        "seconds_per_step": per_step,
        "flops_per_step": float(counter.total),
        "epoch_steps": float(epoch_steps),
        "seconds_per_epoch": per_step * epoch_steps,
    }


def model_ab(data: Any, before: str, steps: int, windows: int) -> dict[str, Any]:
    """Item 1 against offrl at git ref ``before``: seconds per model training step of each
    version in alternating windows (A B B A ...) on the same batches; the before / after ratio
    of each pair of windows (above 1: the working tree is faster)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ab_speed import materialise, resolve_ref  # noqa: PLC0415 (only for --before)

    tmp = Path(tempfile.mkdtemp(prefix="offrl-model-ab-"))
    materialise(resolve_ref(before), "offrl_before", tmp)
    sys.path.insert(0, str(tmp))
    sides = {"before": "offrl_before", "after": "offrl"}
    cfg = DynamicsConfig()
    arrays = training_arrays(data)
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.model_ensemble, cfg.model_batch_size)
    pool = [torch.randint(0, len(arrays[0]), shape, generator=gen) for _ in range(steps)]
    steppers = {}
    for label, package in sides.items():
        train = model_trainer(arrays, package)

        def window(train: Any = train) -> float:
            start = time.perf_counter()
            for idx in pool:
                train(idx)
            return (time.perf_counter() - start) / len(pool)

        window()  # warm-up
        steppers[label] = window
    times: dict[str, list[float]] = {"before": [], "after": []}
    for k in range(windows):
        for label in ("before", "after") if k % 2 == 0 else ("after", "before"):
            times[label].append(steppers[label]())
    ratios = [b / a for b, a in zip(times["before"], times["after"], strict=True)]
    return {
        "before": before,
        "seconds_per_step": times,
        "before_over_after_median": statistics.median(ratios),
        "before_over_after_range": [min(ratios), max(ratios)],
    }


def build(
    name: str, spec: Any, data: Any, model_dir: str, like: Any = None
) -> tuple[Any, TensorSampler]:
    """``name`` at its defaults (a model-based one with a quickly trained model); a model-free
    learner takes the network and batch sizes of the model-based algorithm ``like``."""
    cls = get_algorithm(name)
    options: dict[str, Any] = {}
    if hasattr(cls.config_class, "model_ensemble"):
        options = {"model_dir": model_dir, "model_max_epochs": 1, "model_epoch_steps": 200}
    elif like is not None:
        options = {"hidden": like.config.hidden, "batch_size": like.config.batch_size}
    config = cls.config_class.from_dict(options)
    algo = cls(spec, config, seed=0)
    algo.attach_data(data)
    sampler = TensorSampler(data, algo.data_batch_size(), seed=0)
    return algo, sampler


def rate(algo: Any, batches: list[Any]) -> float:
    start = time.perf_counter()
    for b in batches:
        algo.update(b)
    return len(batches) / (time.perf_counter() - start)


def write(result: dict[str, Any], out: str | None, kind: str) -> None:
    """The raw numbers, as JSON (default: ``benchmarks/results/speed-runs/<kind>-<time>``)."""
    path = Path(
        out or f"benchmarks/results/speed-runs/{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="hopper-medium-v0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-steps", type=int, default=200)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-updates", type=int, default=60)
    parser.add_argument("--out", default=None)
    parser.add_argument("--before", default=None, help="A/B the model step against this git ref")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, progress=print)
    spec = spec_for(dataset, dataset.env_id)
    data = preprocess(
        dataset,
        ObsNormalizer.from_dataset(dataset),
        RewardTransform(),
        spec.action_low,
        spec.action_high,
    )
    result: dict[str, Any] = {
        "dataset": args.dataset,
        "transitions": len(data),
        "threads": args.threads,
        "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "matmul_gflops": matmul_gflops(),
    }
    if args.before:
        result["model_ab"] = ab = model_ab(data, args.before, args.model_steps, 2 * args.windows)
        lo, hi = ab["before_over_after_range"]
        print(json.dumps(ab, indent=2))
        print(f"\nmodel step, {args.before} / working tree: {ab['before_over_after_median']:.3f} "
              f"[{lo:.3f}, {hi:.3f}] ({args.threads} threads)")  # fmt: skip
        write(result, args.out, "model-ab")
        return
    result["model"] = model_step_seconds(data, args.model_steps)
    print("model:", json.dumps(result["model"]))
    with tempfile.TemporaryDirectory() as model_dir:
        mopo, _ = build("mopo", spec, data, model_dir)
        mopo.config.rollout_length = 5
        for case, rule in (("terminating", mopo.model._terminal), ("never_ending", None)):
            mopo.model._terminal = rule  # Hopper's rule, then none: all 50k x 5 transitions
            start = time.perf_counter()
            mopo.model.rollout(mopo)
            result[f"rollout_50k_h5_{case}_seconds"] = time.perf_counter() - start
            result[f"rollout_50k_h5_{case}_transitions"] = mopo.model.metrics()[
                "rollout_transitions"
            ]
            print(f"rollout 50k x 5 ({case}):", result[f"rollout_50k_h5_{case}_seconds"], "s,",
                  result[f"rollout_50k_h5_{case}_transitions"], "transitions")  # fmt: skip
        result["updates"] = {}
        for mb, free in PAIRS:
            b, sb = build(mb, spec, data, model_dir)
            a, sa = build(free, spec, data, model_dir, like=b)
            b.model.rollout(b)
            b.num_updates = 1  # the timed updates do not roll out (item 2 costs that)
            pool_a = [sa.sample() for _ in range(args.window_updates)]
            pool_b = [sb.sample() for _ in range(args.window_updates)]
            rate(a, pool_a[:10])
            rate(b, pool_b[:10])
            b.config.rollout_freq = 10**9
            ratios, rates_a, rates_b = [], [], []
            for _ in range(args.windows):
                ra, rb = rate(a, pool_a), rate(b, pool_b)
                rates_a.append(ra)
                rates_b.append(rb)
                ratios.append(ra / rb)
            with FlopCounter() as ca:
                a.update(pool_a[0])
            with FlopCounter() as cb:
                b.update(pool_b[0])
            row = {
                "free": free,
                "free_updates_per_s": statistics.median(rates_a),
                "mb_updates_per_s": statistics.median(rates_b),
                "cost_ratio_median": statistics.median(ratios),
                "cost_ratio_range": [min(ratios), max(ratios)],
                "free_gflop_per_update": ca.total / 1e9,
                "mb_gflop_per_update": cb.total / 1e9,
            }
            row["mb_fraction_of_bound"] = (
                row["mb_updates_per_s"] * row["mb_gflop_per_update"] / result["matmul_gflops"]
            )
            result["updates"][mb] = row
            print(mb, json.dumps(row))
    write(result, args.out, "model-based")
    m = result["model"]
    print(f"\n{args.dataset}: {len(data):,} transitions, {args.threads} threads, "
          f"matmul {result['matmul_gflops']:.0f} GFLOP/s")  # fmt: skip
    step_ms, gflop = m["seconds_per_step"] * 1e3, m["flops_per_step"] / 1e9
    print(f"- model step {step_ms:.1f} ms ({gflop:.2f} GFLOP), epoch of "
          f"{m['epoch_steps']:.0f} steps {m['seconds_per_epoch']:.0f} s")  # fmt: skip
    for case in ("terminating", "never_ending"):
        print(f"- rollout of 50,000 states x h = 5 ({case.replace('_', ' ')}): "
              f"{result[f'rollout_50k_h5_{case}_seconds']:.1f} s for "
              f"{result[f'rollout_50k_h5_{case}_transitions']:,.0f} transitions")  # fmt: skip
    print("\n| algorithm | upd/s | its learner | upd/s | cost ratio (median [range]) | %bound |")
    print("|---|---:|---|---:|---:|---:|")
    for mb, row in result["updates"].items():
        lo, hi = row["cost_ratio_range"]
        print(f"| {mb} | {row['mb_updates_per_s']:.1f} | {row['free']} | "
              f"{row['free_updates_per_s']:.1f} | {row['cost_ratio_median']:.2f} [{lo:.2f}, "
              f"{hi:.2f}] | {100 * row['mb_fraction_of_bound']:.0f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
