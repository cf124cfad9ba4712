"""Train one d3rlpy 2.8.1 algorithm on a D4RL-layout HDF5 file, evaluated the way offrl evaluates.

Runs inside ``benchmarks/.venv-d3rlpy`` (made by ``setup.sh``); it cannot import offrl. Used by
``benchmarks/d3rlpy/grid.py`` to put d3rlpy's scores next to an ``offrl bench`` grid, and
writes the same files as an ``offrl train`` run directory, so ``offrl bench report`` reads it:

* ``DIR/metrics.jsonl`` -- one ``{"step", "kind": "eval", "eval/return_mean", "eval/return_std",
  "eval/normalized_score"}`` row per evaluation (every ``--eval-every`` steps and at the end),
  and, like offrl's trainer, a ``{"step", "kind": "train", ...}`` row every ``--log-every``
  steps with the means of what d3rlpy's ``update()`` returned (losses, CQL's alpha, ...);
* ``DIR/final.json`` -- the final evaluation, the seed, the step budget, ``library`` and the
  d3rlpy config (``config``);
* ``DIR/command.txt`` -- the command line that reproduces the run;
* ``DIR/checkpoint/`` -- every ``--checkpoint-every`` steps (default: at each evaluation) the
  networks, optimisers and learning-rate schedules (d3rlpy's ``save_model``), the gradient-step
  counter, the evaluations so far and the three random generators d3rlpy draws from (Python's,
  numpy's global one that samples the batches, torch's). Re-running the same command resumes
  from it, and the resumed run is the run that was not interrupted (same batches, same noise).
  Written to a fresh ``ckpt-<step>`` folder and then published by atomically replacing
  ``latest.json``; nothing in it is unpickled (``torch.load`` with ``weights_only``, JSON, npz).

Hyper-parameters are those of d3rlpy's own D4RL reproduction scripts (takuseno/d3rlpy,
``reproductions/offline/{td3_plus_bc,iql,cql}.py`` for d3rlpy 2.x), with ``n_steps`` replaced by
``--steps``:

* TD3+BC: actor/critic lr 3e-4, batch 256, target smoothing sigma 0.2 / clip 0.5, alpha 2.5,
  actor every 2nd update, ``StandardObservationScaler``;
* IQL: actor/critic lr 3e-4, actor lr cosine-annealed over the run (``T_max = --steps``),
  batch 256, weight temperature 3.0, max weight 100, expectile 0.7,
  ``ReturnBasedRewardScaler(multiplier=1000)``, no observation scaler (offrl's IQL normalises
  observations by default);
* CQL: actor lr 1e-4, critic lr 3e-4, temperature lr 1e-4, alpha lr 3e-4, initial alpha e,
  two hidden layers of 256 for actor and critic, batch 256, 10 action samples, alpha threshold
  10, conservative weight 10 for ``*-medium-v0`` datasets and 5 otherwise (decided from the
  file's stem, as the script decides from the dataset name).

Data: ``observations, actions, rewards, terminals, timeouts`` go into ``MDPDataset`` with
terminals and timeouts kept apart (a timeout ends an episode without a terminal flag).
d3rlpy takes the successor of a step from the next row, so the last step of every episode that
ends in a timeout has no successor and is not sampled (as with D4RL's ``qlearning_dataset``);
offrl keeps it, using the file's ``next_observations``.

Training is d3rlpy's own ``fit()`` loop body (scalers fitted on the dataset first, then
``algo.update(dataset.sample_transition_batch(batch_size))``), so it can evaluate on offrl's
schedule. Evaluation matches ``offrl.train.evaluation.evaluate``: deterministic actions
(``algo.predict``) in ``--eval-episodes`` ``gymnasium.make_vec(..., "sync")`` environments
reset with seeds ``eval_seed, eval_seed + 1, ...`` (offrl's ``eval_seed`` is 10000, whatever
the training seed).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import d3rlpy
import gymnasium as gym
import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_run import atomic_write, run_episodes, start_run  # noqa: E402

ALGOS = ("td3plusbc", "iql", "cql")


def save_checkpoint(
    out: Path, algo: Any, step: int, rows: list[dict[str, Any]], sums: dict[str, float]
) -> None:
    """Everything needed to continue at ``step`` as if never stopped (see the module docstring)."""
    root = out / "checkpoint"
    folder = root / f"ckpt-{step}"
    shutil.rmtree(folder, ignore_errors=True)  # a half-written one from a killed run
    folder.mkdir(parents=True)
    algo.save_model(str(folder / "model.d3"))
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    np.savez(folder / "numpy_rng.npz", keys=keys, pos=pos, has_gauss=has_gauss, gauss=gauss)
    torch.save({"torch_rng": torch.get_rng_state()}, folder / "torch_rng.pt")
    version, state, gauss_next = random.getstate()
    state_json = {
        "step": step,
        "grad_step": int(algo.grad_step),
        "rows": rows,
        "metric_sums": sums,
        "python_rng": [version, list(state), gauss_next],
        "numpy_rng_name": name,
    }
    atomic_write(folder / "state.json", json.dumps(state_json))
    atomic_write(root / "latest.json", json.dumps({"folder": folder.name, "step": step}))
    for old in root.glob("ckpt-*"):  # only the published one is kept
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, algo: Any) -> tuple[int, list[dict[str, Any]], dict[str, float]]:
    """Restore the latest checkpoint into ``algo`` and the generators: ``(step, rows,
    metric sums)``, or ``(0, [], {})`` when there is none."""
    latest = out / "checkpoint" / "latest.json"
    if not latest.exists():
        return 0, [], {}
    folder = out / "checkpoint" / json.loads(latest.read_text())["folder"]
    state = json.loads((folder / "state.json").read_text())
    algo.load_model(str(folder / "model.d3"))
    algo.set_grad_step(state["grad_step"])
    rng = np.load(folder / "numpy_rng.npz")
    np.random.set_state(
        (
            state["numpy_rng_name"],
            rng["keys"],
            int(rng["pos"]),
            int(rng["has_gauss"]),
            float(rng["gauss"]),
        )
    )
    torch.set_rng_state(torch.load(folder / "torch_rng.pt", weights_only=True)["torch_rng"])
    version, py_state, gauss_next = state["python_rng"]
    random.setstate((version, tuple(py_state), gauss_next))
    return int(state["step"]), list(state["rows"]), dict(state.get("metric_sums", {}))


def load_dataset(path: str) -> d3rlpy.dataset.MDPDataset:
    with h5py.File(path, "r") as f:
        obs = f["observations"][()].astype(np.float32)
        actions = f["actions"][()].astype(np.float32)
        rewards = f["rewards"][()].astype(np.float32).reshape(-1)
        terminals = f["terminals"][()].astype(np.float32).reshape(-1)
        if "timeouts" in f:
            timeouts = f["timeouts"][()].astype(np.float32).reshape(-1)
        else:
            timeouts = np.zeros_like(terminals)
    timeouts[(terminals > 0)] = 0.0  # a step is one or the other
    timeouts[-1] = max(timeouts[-1], 1.0 - terminals[-1])  # the last episode ends somewhere
    return d3rlpy.dataset.MDPDataset(
        observations=obs,
        actions=actions,
        rewards=rewards,
        terminals=terminals,
        timeouts=timeouts,
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )


def make_config(algo: str, steps: int, dataset_name: str) -> d3rlpy.base.LearnableConfig:
    """d3rlpy's reproduction settings (see the module docstring)."""
    if algo == "td3plusbc":
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=256,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            alpha=2.5,
            update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        )
    if algo == "iql":
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps),
            ),
            batch_size=256,
            weight_temp=3.0,
            max_weight=100.0,
            expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        )
    if algo == "cql":
        encoder = d3rlpy.models.encoders.VectorEncoderFactory([256, 256])
        return d3rlpy.algos.CQLConfig(
            actor_learning_rate=1e-4,
            critic_learning_rate=3e-4,
            temp_learning_rate=1e-4,
            alpha_learning_rate=3e-4,
            initial_alpha=math.e,
            actor_encoder_factory=encoder,
            critic_encoder_factory=encoder,
            batch_size=256,
            n_action_samples=10,
            alpha_threshold=10,
            conservative_weight=10.0 if "medium-v0" in dataset_name else 5.0,
        )
    raise ValueError(f"unknown algorithm {algo!r}; use one of {ALGOS}")


def evaluate(algo: Any, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` deterministic episodes, exactly as offrl's ``evaluate`` runs them."""
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    return run_episodes(envs, lambda obs: algo.predict(np.asarray(obs, dtype=np.float32)), seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=ALGOS, required=True)
    p.add_argument("--hdf5", required=True, help="D4RL-layout HDF5 file")
    p.add_argument("--env", required=True, help="Gymnasium id to evaluate on")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=10_000, help="offrl's default: 10000")
    p.add_argument("--out", required=True)
    p.add_argument("--ref-min", type=float, default=None, help="random reference return")
    p.add_argument("--ref-max", type=float, default=None, help="expert reference return")
    p.add_argument("--dataset-name", default=None, help="for CQL's weight (default: file stem)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=1000, help="train-metric rows (0: none)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="steps between checkpoints (default: --eval-every); 0 turns them off",
    )
    args = p.parse_args(argv)

    out = start_run(args.out, __file__, argv)

    torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    dataset = load_dataset(args.hdf5)
    name = args.dataset_name or Path(args.hdf5).stem
    config = make_config(args.algo, args.steps, name)
    algo = config.create(device=False)
    # What fit() does before its loop: fit the scalers on the dataset, then build the networks.
    d3rlpy.algos.utility.build_scalers_with_transition_picker(algo, dataset)
    algo.build_with_dataset(dataset)

    def score(ret: float) -> float | None:
        if args.ref_min is None or args.ref_max is None:
            return None
        return 100.0 * (ret - args.ref_min) / (args.ref_max - args.ref_min)

    every = args.eval_every if args.checkpoint_every is None else args.checkpoint_every
    # sums: update() metrics since the last train row ("_n": how many updates), checkpointed so
    # that a resumed run writes the rows an uninterrupted one writes.
    start, rows, sums = load_checkpoint(out, algo)
    if start:
        print(f"resuming from step {start}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    for step in range(start + 1, args.steps + 1):
        for key, value in algo.update(dataset.sample_transition_batch(config.batch_size)).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        sums["_n"] = sums.get("_n", 0.0) + 1.0
        if args.log_every and step % args.log_every == 0:
            n = sums.pop("_n")
            rows.append({"step": step, "kind": "train", **{k: v / n for k, v in sums.items()}})
            sums = {}
        if step % args.eval_every == 0 or step == args.steps:
            rets = evaluate(algo, args.env, args.eval_episodes, args.eval_seed)
            norm = [score(float(r)) for r in rets]
            rows.append(
                {
                    "step": step,
                    "kind": "eval",
                    "eval/return_mean": float(rets.mean()),
                    "eval/return_std": float(rets.std()),
                    "eval/normalized_score": (
                        None if norm[0] is None else float(np.mean(norm))  # type: ignore[arg-type]
                    ),
                }
            )
            atomic_write(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        if every and step % every == 0 and step < args.steps:
            save_checkpoint(out, algo, step, rows, sums)
    last = [r for r in rows if r["kind"] == "eval"][-1]
    final = {
        "library": f"d3rlpy {d3rlpy.__version__}",
        "algo": args.algo,
        "dataset": str(args.hdf5),
        "env_id": args.env,
        "seed": args.seed,
        "steps": args.steps,
        "return_mean": last["eval/return_mean"],
        "return_std": last["eval/return_std"],
        "normalized_score": last["eval/normalized_score"],
        "eval_episodes": args.eval_episodes,
        "eval_seed": args.eval_seed,
        "seconds": time.perf_counter() - t0,  # since the resume, if it resumed
        "resumed_from_step": start,
        "transitions": int(dataset.transition_count),
        "config": json.loads(config.serialize()),
    }
    atomic_write(out / "final.json", json.dumps(final, indent=2) + "\n")
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # the run is complete
    return 0


if __name__ == "__main__":
    sys.exit(main())
