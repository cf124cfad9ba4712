"""Train one of Tianshou 2.0.1's discrete offline algorithms on an offrl dataset file, evaluated
the way offrl evaluates (run in benchmarks/.venv-tianshou; ``benchmarks/tianshou/grid.py`` runs
it for every cell of an ``offrl bench`` grid).

Algorithms (``--algo``), with offrl's defaults, which are Tianshou's Atari examples' (batch 32,
gamma 0.99, one-step targets):

* ``bcq``: ``DiscreteBCQ`` -- threshold 0.3, imitation-logits penalty 1e-2, target copied every
  8000 updates, Adam lr 6.25e-5 (``atari_bcq.py``); Q-values and imitation logits share the
  trunk (offrl's layout);
* ``cql``: ``DiscreteCQL`` on ``QRDQNPolicy`` -- 200 quantiles, ``min_q_weight`` 10, target every
  500, lr 1e-4 (``atari_cql.py``);
* ``crr`` / ``crr_cql``: ``DiscreteCRR`` (``exp`` weights, beta 1, clip 20, targets every 500,
  lr 1e-4) with ``min_q_weight`` 0 (plain CRR) or 10 (the seed's CRR + CQL); actor and critic
  have trunks of their own, as offrl's ``discrete_crr``.

The networks are offrl's (``nets.py``). The data is an offrl ``.npz`` file (``offrl dataset
make`` caches one per name) read with NumPy alone, into one ``ReplayBuffer`` (``terminated`` from
``terminals``, ``truncated`` from ``timeouts``). Each step is Tianshou's own offline update,
``algorithm.update(buffer, sample_size=32)``, inside ``policy_within_training_step`` as its
trainer runs it. Tianshou 2.0.1's ``ReplayBuffer`` draws its batches from a generator of its own,
``RandomState(42)`` whatever ``--seed`` is (its ``random_seed`` default), so Tianshou's seeds
share their batches and differ in their initial weights only; the grid keeps that default, as a
Tianshou user gets it.

Evaluation: greedy actions (``deterministic_eval`` for CRR's policy; Tianshou's ``atari_crr.py``
samples instead), ``--eval-episodes`` episodes side by side in environments
seeded ``--eval-seed + i``, offrl's own environment code (``offrl/envs.py``, loaded by path),
exactly as ``offrl.train.evaluation.evaluate``.

Writes what ``offrl bench report`` reads of a run: ``metrics.jsonl`` (an ``eval`` row per
evaluation, a ``train`` row of mean losses every ``--log-every`` updates and at the end),
``final.json`` (with ``final_eval``: every episode of ``--final-eval-episodes`` episodes of the
last policy, seeded from ``--eval-seed``, as offrl's trainer records it;
``updates_per_s``: updates over the seconds spent in them, evaluations excluded, also per
``train`` row) and ``command.txt``.

Resumable: after every evaluation the whole state (networks, target networks, optimisers, the
update counter, the torch and NumPy generators, the rows so far) goes to ``checkpoint.pt``,
written atomically and loaded with ``weights_only=True``. Re-running the same command continues
from it, to the result an uninterrupted run gives; a larger ``--steps`` extends a finished run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.imitation.discrete_bcq import DiscreteBCQ, DiscreteBCQPolicy
from tianshou.algorithm.imitation.discrete_cql import DiscreteCQL
from tianshou.algorithm.imitation.discrete_crr import DiscreteCRR
from tianshou.algorithm.modelfree.qrdqn import QRDQNPolicy
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nets import Head, Trunk  # noqa: E402
from peer_run import atomic_write, run_episodes, start_run  # noqa: E402

ALGOS = ("bcq", "cql", "crr", "crr_cql")
CHECKPOINT = "checkpoint.pt"
RESUME_KEYS = ("algo", "npz", "seed", "eval_every", "log_every")
"""The options a checkpoint must share with the command that resumes it."""
ENVS_PY = Path(__file__).resolve().parents[2] / "offrl" / "envs.py"


def offrl_envs() -> Any:
    """offrl's ``offrl/envs.py`` as a module of its own (it needs only Gymnasium and NumPy; the
    offrl package is not installed here)."""
    spec = importlib.util.spec_from_file_location("offrl_envs", ENVS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_buffer(path: Path) -> tuple[ReplayBuffer, str, tuple[int, ...], int]:
    """``(buffer, env_id, obs_shape, transitions)`` of an offrl ``.npz`` dataset."""
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["offrl_header"].tobytes().decode("utf-8"))
        arrays = {k: npz[k] for k in npz.files if k != "offrl_header"}
    terminated = arrays["terminals"].astype(bool)
    truncated = arrays["timeouts"].astype(bool)
    buffer = ReplayBuffer.from_data(
        obs=arrays["observations"], act=arrays["actions"].astype(np.int64),
        rew=arrays["rewards"].astype(np.float32), terminated=terminated, truncated=truncated,
        done=terminated | truncated, obs_next=arrays["next_observations"],
    )  # fmt: skip
    obs_shape = tuple(int(x) for x in arrays["observations"].shape[1:])
    return buffer, str(header["env_id"]), obs_shape, len(arrays["rewards"])


def make_env(env_id: str) -> gym.Env:
    """An offrl MinAtar id (``offrl/MinAtar-<Game>-v1``) made by offrl's own code."""
    match = re.fullmatch(r"offrl/MinAtar-(\w+)-v1", env_id)
    if match is None:
        raise SystemExit(f"{env_id}: only offrl's MinAtar environments are supported here")
    return offrl_envs().make_minatar(match.group(1))


def build(algo: str, shape: tuple[int, ...], space: gym.spaces.Discrete) -> tuple[Any, Any]:
    """``(algorithm, policy)`` with offrl's defaults (see the module docstring)."""
    a = int(space.n)
    if algo == "bcq":
        trunk = Trunk(shape)
        policy = DiscreteBCQPolicy(
            model=Head(trunk, a), imitator=Head(trunk, a), action_space=space,
            target_update_freq=8000, unlikely_action_threshold=0.3,
        )  # fmt: skip
        return DiscreteBCQ(
            policy=policy, optim=AdamOptimizerFactory(lr=6.25e-5), gamma=0.99,
            target_update_freq=8000, imitation_logits_penalty=1e-2,
        ), policy  # fmt: skip
    if algo == "cql":
        policy = QRDQNPolicy(model=Head(Trunk(shape), a, 200), action_space=space)
        return DiscreteCQL(
            policy=policy, optim=AdamOptimizerFactory(lr=1e-4), min_q_weight=10.0, gamma=0.99,
            num_quantiles=200, target_update_freq=500,
        ), policy  # fmt: skip
    policy = DiscreteActorPolicy(
        actor=Head(Trunk(shape), a), action_space=space, deterministic_eval=True
    )
    return DiscreteCRR(
        policy=policy, critic=Head(Trunk(shape), a, stateful=False),
        optim=AdamOptimizerFactory(lr=1e-4), gamma=0.99, policy_improvement_mode="exp",
        ratio_upper_bound=20.0, beta=1.0,
        min_q_weight=10.0 if algo == "crr_cql" else 0.0, target_update_freq=500,
    ), policy  # fmt: skip


def evaluate(policy: Any, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` greedy episodes, exactly as offrl's ``evaluate`` runs them."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(episodes)])

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(policy(Batch(obs=obs, info=Batch())).act)

    policy.eval()
    returns = run_episodes(envs, act, seed)
    policy.train()
    return returns


def scalars(stats: Any) -> dict[str, float]:
    """The numbers in a Tianshou training-stats object (its losses)."""
    return {
        k: float(v)
        for k, v in vars(stats).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "train_time"
    }


def _rng_blob(state: tuple[Any, ...]) -> list[Any]:
    """A NumPy ``RandomState`` state as what ``torch.load(weights_only=True)`` reads back."""
    name, keys, pos, has_gauss, gauss = state
    keys = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return [str(name), keys, int(pos), int(has_gauss), float(gauss)]


def _rng_state(blob: list[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, gauss = blob
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)


def save_checkpoint(path: Path, algo: Any, buffer: ReplayBuffer, state: dict[str, Any]) -> None:
    """The run's whole state after an evaluation, atomically (a temporary file, then a rename)."""
    blob = {
        **state,
        "algorithm": algo.state_dict(),
        "iter": int(algo._iter),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _rng_blob(np.random.get_state()),
        "buffer_rng": _rng_blob(buffer._random_state.get_state()),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        torch.save(blob, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(
    path: Path, algo: Any, buffer: ReplayBuffer, args: argparse.Namespace
) -> dict[str, Any]:
    """Restore ``algo`` and the generators (the buffer's own) from ``path``; the saved loop
    state."""
    blob = torch.load(path, weights_only=True)
    for key in RESUME_KEYS:
        if blob["args"][key] != getattr(args, key):
            raise SystemExit(
                f"{path}: --{key.replace('_', '-')} was {blob['args'][key]!r}, now "
                f"{getattr(args, key)!r}; use another --out or the run's own options"
            )
    if blob["step"] > args.steps:
        raise SystemExit(f"{path}: already at {blob['step']} updates, beyond --steps {args.steps}")
    algo.load_state_dict(blob["algorithm"])
    algo._iter = blob["iter"]
    torch.set_rng_state(blob["torch_rng"])
    np.random.set_state(_rng_state(blob["numpy_rng"]))
    buffer._random_state.set_state(_rng_state(blob["buffer_rng"]))
    return blob


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=ALGOS, required=True)
    p.add_argument("--npz", required=True, help="an offrl .npz dataset")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=10_000, help="offrl's default: 10000")
    p.add_argument(
        "--final-eval-episodes", type=int, default=100, help="the last policy's many-episode score"
    )
    p.add_argument("--log-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    out = start_run(args.out, __file__, argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    buffer, env_id, shape, transitions = load_buffer(Path(args.npz))
    space = make_env(env_id).action_space
    algo, policy = build(args.algo, shape, space)
    algo.train()

    rows: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    n, window, update_seconds, t0 = 0, 0.0, 0.0, time.perf_counter()
    step, seconds_before = 0, 0.0
    if (out / CHECKPOINT).exists():
        saved = load_checkpoint(out / CHECKPOINT, algo, buffer, args)
        step, rows = saved["step"], saved["rows"]
        update_seconds, seconds_before = saved["update_seconds"], saved["seconds"]
        sums, n, window = saved["sums"], saved["n"], saved["window"]
        print(f"resumed at {step} updates from {out / CHECKPOINT}", file=sys.stderr)
    while step < args.steps:
        chunk = min(args.eval_every - step % args.eval_every, args.steps - step)
        with policy_within_training_step(policy):
            for _ in range(chunk):
                t = time.perf_counter()
                stats = algo.update(buffer=buffer, sample_size=32)
                window += time.perf_counter() - t
                step += 1
                for key, value in scalars(stats).items():
                    sums[key] = sums.get(key, 0.0) + value
                n += 1
                if (args.log_every and step % args.log_every == 0) or step == args.steps:
                    means = {k: v / n for k, v in sums.items()}
                    rows.append(
                        {"step": step, "kind": "train", **means, "updates_per_s": n / window}
                    )
                    sums, n, update_seconds, window = {}, 0, update_seconds + window, 0.0
        rets = evaluate(policy, env_id, args.eval_episodes, args.eval_seed)
        rows.append(
            {
                "step": step,
                "kind": "eval",
                "eval/return_mean": float(rets.mean()),
                "eval/return_std": float(rets.std()),
                "eval/normalized_score": None,
            }
        )
        atomic_write(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        state = {
            "args": {k: getattr(args, k) for k in RESUME_KEYS},
            "step": step,
            "rows": rows,
            "update_seconds": update_seconds,
            "sums": sums,
            "n": n,
            "window": window,
            "seconds": seconds_before + time.perf_counter() - t0,
        }
        save_checkpoint(out / CHECKPOINT, algo, buffer, state)
    last = rows[-1]
    final_eval = None
    if args.final_eval_episodes:
        returns = evaluate(policy, env_id, args.final_eval_episodes, args.eval_seed)
        final_eval = {
            "episodes": args.final_eval_episodes,
            "seed": args.eval_seed,
            "returns": [float(r) for r in returns],
        }
    final = {
        "library": f"tianshou {__import__('tianshou').__version__}",
        "algo": args.algo,
        "dataset": str(args.npz),
        "env_id": env_id,
        "seed": args.seed,
        "steps": args.steps,
        "return_mean": last["eval/return_mean"],
        "return_std": last["eval/return_std"],
        "normalized_score": None,
        "eval_episodes": args.eval_episodes,
        "eval_seed": args.eval_seed,
        "final_eval": final_eval,
        "seconds": seconds_before + time.perf_counter() - t0,
        "updates_per_s": args.steps / (update_seconds + window),
        "threads": args.threads,
        "transitions": transitions,
    }
    atomic_write(out / "final.json", json.dumps(final, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
