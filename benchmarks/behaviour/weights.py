"""How far IQL's advantage weights are from behaviour cloning's, checkpoint by checkpoint (issue 25,
item 7: why IQL ends level with BC on some of offrl's datasets).

IQL's actor maximises ``E[w log pi(a|s)]`` with ``w = min(exp(beta A), max_weight)`` and
``A = min_i Q'_i(s, a) - V(s)``. If every ``w`` were equal it would be behaviour cloning. For every
checkpoint of an IQL run this reports, on a fixed sample of the dataset's transitions:

- ``std A``: the spread of the advantages (in the run's own reward units: IQL's ``return_range``
  transform), and ``beta * std A``, the spread of the log-weights;
- ``ESS``: the weights' effective sample size as a fraction of the sample,
  ``(sum w)^2 / (n sum w^2)``: 1 is behaviour cloning, small values mean a few actions dominate;
- ``clipped``: the share of weights at ``max_weight``;
- ``corr(w, G)``: the rank correlation of a transition's weight with its episode's return, i.e.
  whether IQL leans towards the better episodes' actions;
- ``G_w``: the weighted mean of the episodes' normalised returns, ``sum(w G) / sum(w)``: the
  level of the data IQL's actor effectively clones (the plain mean, behaviour cloning's, is in
  the first line).

    OFFRL_DATA_DIR=... python benchmarks/behaviour/weights.py runs/budget/hopper-medium-v0/iql/s0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from offrl.data import load_dataset
from offrl.losses import advantage_weights
from offrl.scores import normalized_score
from offrl.train.checkpoint import load_algorithm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modes import as_trained, evaluations_and_checkpoints  # noqa: E402


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="an IQL run directory with checkpoints/step_*.pt")
    ap.add_argument("--sample", type=int, default=20000, help="transitions drawn")
    ap.add_argument("--every", type=int, default=1, help="every k-th checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = json.loads((args.run / "config.json").read_text())
    data = load_dataset(config["dataset"]["name"])
    rng = np.random.default_rng(0)
    rows = rng.choice(len(data), size=min(args.sample, len(data)), replace=False)
    episode_return = data.episode_returns()[data.episode_ids()[rows]]
    env_id = data.env_id or ""
    norm = np.array([normalized_score(env_id, float(g)) or np.nan for g in episode_return])
    sample = data.select(rows)
    evals, ckpts = evaluations_and_checkpoints(args.run)
    print(
        f"{config['dataset']['name']}: {len(rows):,} transitions, their episodes' mean "
        f"normalised return {np.mean(norm):.1f}"
    )
    print("| step | eval | std A | beta std A | ESS | clipped | corr(w, G) | G_w |")
    print("|---|---|---|---|---|---|---|---|")
    for step, path in ckpts[:: args.every]:
        algo = load_algorithm(path)
        cfg = algo.config
        with torch.no_grad():
            z, a = as_trained(algo, sample)
            adv = algo.critic_target(z, a).amin(0) - algo.value(z)[0]
            w = advantage_weights(adv, cfg.beta, cfg.max_weight).double().numpy()
        adv_np = adv.double().numpy()
        ess = w.sum() ** 2 / (len(w) * (w**2).sum())
        corr = np.corrcoef(_ranks(w), _ranks(episode_return))[0, 1]
        print(
            f"| {step:,} | {evals.get(step, float('nan')):.1f} | {adv_np.std():.3f} | "
            f"{cfg.beta * adv_np.std():.2f} | {ess:.2f} | {(w >= cfg.max_weight).mean():.3f} | "
            f"{corr:+.2f} | {(w * norm).sum() / w.sum():.1f} |"
        )


if __name__ == "__main__":
    main()
