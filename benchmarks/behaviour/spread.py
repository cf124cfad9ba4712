"""How noisy each SAC snapshot's sampled actions are, along its training run (issue 25, item 7).

The datasets record *sampled* actions of the snapshot's tanh-Gaussian, as D4RL's did. How far a
sampled action lies from the policy's mean action depends on where in training the snapshot was
taken: SAC's temperature falls as it trains, and with it the policy's standard deviation. This
script rolls each snapshot of a behaviour pack (or of an ``offrl online`` run's ``snapshots/``)
out for a few stochastic episodes and reports, over the states it visits:

- ``sigma``: the Gaussian's standard deviation before the tanh, averaged over action dimensions;
- ``|a - mean|``: the mean distance of a sampled action component from the mean action
  ``tanh(mu)`` (what the dataset's noise around the policy is);
- ``at the edge``: the fraction of sampled action components with ``|a| > 0.99``;
- the episode return, D4RL-normalised.

    .venv/bin/python benchmarks/behaviour/spread.py offrl/data/behaviour/hopper-v5.pt
    .venv/bin/python benchmarks/behaviour/spread.py RUN_ROOT/Walker2d-v5-s1 --every 100000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from offrl.nn import TanhGaussianPolicy
from offrl.scores import normalized_score
from offrl.suite.factory import load_pack


def _snapshots(source: Path) -> tuple[str, dict[int, TanhGaussianPolicy], dict[str, int]]:
    """``(env_id, {step: actor}, {level: step})`` of a pack file or a run directory."""
    if source.is_file():
        pack = load_pack(source)
        actors = {s: pack.actor(s) for s in sorted(pack.snapshots)}
        return pack.env_id, actors, {"medium": pack.medium_step, "expert": pack.expert_step}
    actors, env_id = {}, ""
    for f in sorted((source / "snapshots").glob("step_*.pt")):
        snap = torch.load(f, map_location="cpu", weights_only=True)
        spec, hidden = snap["spec"], snap["config"]["hidden"]
        net = TanhGaussianPolicy(int(np.prod(spec["obs_shape"])), spec["action_dim"], hidden)
        net.load_state_dict(snap["actor"])
        actors[int(snap["step"])] = net.requires_grad_(False)
        env_id = str(snap["env_id"])
    return env_id, dict(sorted(actors.items())), {}


@torch.no_grad()
def measure(env_id: str, actor: TanhGaussianPolicy, episodes: int, seed: int) -> dict[str, float]:
    """Roll ``actor``'s sampled actions out for ``episodes`` episodes."""
    env = gym.make(env_id)
    gen = torch.Generator().manual_seed(seed)
    sigmas, dists, edges, returns = [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, ret = False, 0.0
        while not done:
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            mu, log_std = actor.head.params(actor.net(o)[0])
            a, _ = actor.head.sample_from(mu, log_std, gen)
            sigmas.append(float(log_std.exp().mean()))
            dists.append(float((a - torch.tanh(mu)).abs().mean()))
            edges.append(float((a.abs() > 0.99).float().mean()))
            obs, r, term, trunc, _ = env.step(a[0].numpy())
            ret += float(r)
            done = term or trunc
        returns.append(ret)
    env.close()
    mean_return = float(np.mean(returns))
    score = normalized_score(env_id, mean_return)
    return {
        "sigma": float(np.mean(sigmas)),
        "dist": float(np.mean(dists)),
        "edge": float(np.mean(edges)),
        "return": mean_return,
        "score": float("nan") if score is None else score,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a behaviour pack (.pt) or a run directory")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--every", type=int, default=0, help="only steps divisible by this")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env_id, actors, levels = _snapshots(args.source)
    names = {step: level for level, step in levels.items()}
    print(f"{args.source} ({env_id}, {args.episodes} stochastic episodes per snapshot)\n")
    print("| step | level | sigma | \\|a − mean\\| | at the edge | return | D4RL normalised |")
    print("|---|---|---|---|---|---|---|")
    for step, actor in actors.items():
        if args.every and step % args.every and step not in names:
            continue
        m = measure(env_id, actor, args.episodes, seed=12345)
        print(
            f"| {step:,} | {names.get(step, '')} | {m['sigma']:.3f} | {m['dist']:.3f} | "
            f"{m['edge']:.2f} | {m['return']:.0f} | {m['score']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
