"""Which part of a mixed dataset a trained actor follows, checkpoint by checkpoint (issue 25,
item 7: TD3+BC's swings on ``hopper-medium-expert-v0``).

A medium-expert dataset joins the episodes of two policies. For every checkpoint of a run, this
splits the dataset's states by the episode they come from (return above or below ``--split``,
normalised: ``upper`` and ``lower``; on a medium-expert dataset, the expert's episodes and the
medium's) and reports, on a fixed sample of each part:

- ``|pi - a|``: the mean absolute distance of the actor's action from the dataset's action there;
- ``Q(s,a)`` and ``Q(s,pi)``: the first critic's value of the dataset action and of the actor's
  (``Q(s,pi) - Q(s,a)`` is how far the actor climbs the critic away from the data);
- ``|dQ/da|``: the norm of the first critic's slope in the action at the dataset's action (the
  pull the actor's Q term feels there, before TD3+BC's ``lambda``);
- ``G``: the part's discounted Monte-Carlo return-to-go, for scale;

beside the run's own evaluation at that step (``metrics.jsonl``). Reads checkpoints, so it runs
on a finished cell whose ``checkpoints/`` were kept (``runs/long-grid``).

    OFFRL_DATA_DIR=... python benchmarks/behaviour/modes.py \
        runs/long-grid/hopper-medium-expert-v0/td3bc/s0
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.data import Dataset, load_dataset
from offrl.data.normalization import preprocess
from offrl.scores import normalized_score
from offrl.train.checkpoint import load_algorithm
from offrl.train.loggers import read_metrics


def evaluations_and_checkpoints(run: Path) -> tuple[dict[int, float], list[tuple[int, Path]]]:
    """A run's evaluations ``{step: normalised score}`` (``metrics.jsonl``) and its
    ``checkpoints/step_<N>.pt`` as ``(N, path)``, in order of N."""
    evals = {
        row["step"]: row["eval/normalized_score"]
        for row in read_metrics(run / "metrics.jsonl")
        if "eval/normalized_score" in row
    }
    ckpts = [(int(re.findall(r"\d+", p.stem)[0]), p) for p in run.glob("checkpoints/step_*.pt")]
    return evals, sorted(ckpts)


def as_trained(algo: Algorithm, rows: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows``' observations and actions as ``algo`` saw them in training: observations
    normalised by its statistics, actions in its unit box (the trainer's ``preprocess``)."""
    seen = preprocess(rows, algo.normalizer(), None, *algo.spec.bounds())
    return torch.as_tensor(seen.observations), torch.as_tensor(seen.actions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run directory with checkpoints/step_*.pt")
    ap.add_argument("--split", type=float, default=70.0, help="normalised return that splits parts")
    ap.add_argument("--sample", type=int, default=20000, help="states drawn from each part")
    ap.add_argument("--gamma", type=float, default=0.99)
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = json.loads((args.run / "config.json").read_text())
    name = config["dataset"]["name"]
    data = load_dataset(name)
    env_id = config["env_id"]
    returns = np.array([normalized_score(env_id, r) or 0.0 for r in data.episode_returns()])
    upper = returns[data.episode_ids()] >= args.split
    rtg = data.returns_to_go(args.gamma)
    rng = np.random.default_rng(0)
    parts = {}
    for label, mask in (("upper", upper), ("lower", ~upper)):
        rows = rng.choice(
            np.flatnonzero(mask), size=min(args.sample, int(mask.sum())), replace=False
        )
        parts[label] = (data.select(rows), rtg[rows])
    evals, ckpts = evaluations_and_checkpoints(args.run)
    print(
        f"{name}: split at {args.split} normalised; "
        f"{upper.mean():.2f} of the rows are the upper part"
    )
    print(
        "| step | eval | part | \\|pi - a\\| | Q(s,a) | Q(s,pi) | Q(s,pi) - Q(s,a) "
        "| \\|dQ/da\\| | G |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for step, path in ckpts:
        algo = load_algorithm(path)
        for label, (rows, g) in parts.items():
            z, a = as_trained(algo, rows)
            a.requires_grad_(True)
            q = algo.critic(z, a)[0]
            (grad,) = torch.autograd.grad(q.sum(), a)
            slope = grad.norm(dim=-1).mean().item()
            q_data = q.mean().item()
            with torch.no_grad():
                pi = algo.policy(z)
                q_pi = algo.critic(z, pi)[0].mean().item()
                dist = (pi - a).abs().mean().item()
            print(
                f"| {step:,} | {evals.get(step, float('nan')):.1f} | {label} | {dist:.3f} | "
                f"{q_data:.1f} | {q_pi:.1f} | {q_pi - q_data:+.2f} | {slope:.1f} | {g.mean():.1f} |"
            )


if __name__ == "__main__":
    main()
