"""The online training loop: collect with the current policy, learn from a replay buffer.

``train_online(OnlineConfig(...))`` trains an algorithm that can explore (SAC) on vectorised
Gymnasium environments. It is what trains the behaviour policies of offrl's MuJoCo datasets,
which takes hours on a 2-core machine, so everything needed to continue is checkpointed::

    RUN/config.json              the resolved configuration
    RUN/metrics.jsonl            train / rollout / eval records (also CSV, TensorBoard, W&B)
    RUN/checkpoints/latest.pt    algorithm, optimisers, replay buffer, RNG states, step
    RUN/snapshots/step_<N>.pt    policy-only snapshots with their evaluation return: the
                                 candidates for the dataset factory's behaviour levels
    RUN/final.json               the final evaluation

``resume=True`` continues from ``latest.pt``. Networks, optimisers, replay buffer, random
streams and, for MuJoCo and classic-control environments, the simulators themselves
(:mod:`offrl.train.envstate`) continue exactly, so a killed run resumes to the same result as
an uninterrupted one. For other environments, whose state cannot be saved, the episodes that
were running when the process died are stored as truncated (timeouts) and fresh ones start.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from offrl._version import __version__
from offrl.algos import get_algorithm
from offrl.algos.base import Algorithm, EnvSpec
from offrl.config import check_options
from offrl.data.replay import ReplayBuffer
from offrl.envs import register_envs
from offrl.errors import TrainingDiverged
from offrl.io import write_json
from offrl.rng import restore_generator
from offrl.train.checkpoint import (
    SAFE_RESUME_CHANGES,
    load_latest,
    previous_resumes,
    remove_stale_temps,
    resume_changes,
    save_checkpoint,
)
from offrl.train.envstate import restore_env_state, save_env_state
from offrl.train.evaluation import evaluate, logged_final_evaluation
from offrl.train.guard import DivergenceGuard
from offrl.train.loggers import MetricLogger, read_metrics

__all__ = ["OnlineConfig", "OnlinePlan", "train_online", "run_online", "env_spec"]


@dataclass
class OnlineConfig:
    """One online training run (step counts are environment steps over all envs)."""

    algo: str = "sac"
    """A registered algorithm that can explore (implements ``Algorithm.explore``)."""
    env_id: str = "Pendulum-v1"
    """Gymnasium environment id."""
    out: str = ""
    """Run directory (default ``runs/online-<algo>-<env>-s<seed>``)."""
    steps: int = 1_000_000
    """Environment steps to collect."""
    seed: int = 0
    """Seeds networks, environments, exploration and batch sampling."""
    num_envs: int = 1
    """Vectorised environments stepped together (each step collects ``num_envs`` transitions
    and makes ``num_envs * updates_per_step`` updates)."""
    start_steps: int = 10_000
    """Uniform random actions for this many first steps, and no updates before them
    (SpinningUp's default)."""
    updates_per_step: int = 1
    """Gradient updates per environment step (SAC: 1)."""
    buffer_size: int = 1_000_000
    """Replay capacity (SAC: 1e6). Keep it at least ``steps`` to export the whole replay."""
    eval_every: int = 10_000
    """Evaluate the deterministic policy every this many steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_seed: int = 10_000
    """First seed of the evaluation environments (kept apart from collection seeds)."""
    final_eval_episodes: int = 0
    """Episodes of the final policy's many-episode evaluation (``final.json``'s ``final_eval``:
    every episode's return, as ``offrl train`` writes it); 0: none."""
    snapshot_every: int = 20_000
    """Save a policy-only snapshot with its evaluation every this many steps (0: never)."""
    checkpoint_every: int = 10_000
    """Write ``checkpoints/latest.pt`` every this many steps."""
    log_every: int = 1_000
    """Average training metrics over this many steps per record."""
    threads: int | None = None
    """``torch.set_num_threads`` (default: leave PyTorch's choice)."""
    device: str = "cpu"
    """Torch device."""
    tensorboard: bool = False
    """Also log to TensorBoard."""
    wandb: bool = False
    """Also log to Weights & Biases (offline mode unless WANDB_MODE is set)."""
    progress: bool = True
    """Show a progress bar."""
    algo_config: dict[str, Any] = field(default_factory=dict)
    """Overrides of the algorithm's config fields."""

    def __post_init__(self) -> None:
        check_options(self)  # types and ranges, with a message naming the option

    def run_dir(self) -> Path:
        """The run directory."""
        return Path(self.out or f"runs/online-{self.algo}-{self.env_id}-s{self.seed}")


def env_spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of a Gymnasium environment with continuous (Box) or discrete
    actions."""
    register_envs()  # offrl's MinAtar / Atari ids
    env = gym.make(env_id)
    obs_space, space = env.observation_space, env.action_space
    env.close()
    assert obs_space.shape is not None
    if isinstance(space, gym.spaces.Discrete):
        return EnvSpec(tuple(obs_space.shape), int(space.n), discrete=True)
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"{env_id}: online training needs a continuous (Box) or Discrete action space, "
            f"not {type(space).__name__}"
        )
    return EnvSpec(
        tuple(obs_space.shape),
        int(np.prod(space.shape)),
        action_low=tuple(float(x) for x in space.low.ravel()),
        action_high=tuple(float(x) for x in space.high.ravel()),
    )


ONLINE_SAFE_CHANGES = (*SAFE_RESUME_CHANGES, "snapshot_every", "final_eval_episodes")
"""Options of :class:`OnlineConfig` that ``allow_changes`` may let a resume change."""


def train_online(
    cfg: OnlineConfig, resume: bool = False, allow_changes: Iterable[str] = ()
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) one online run; returns the final summary.

    As :func:`offrl.train.train`: a resume with other options is refused unless
    ``allow_changes`` names them (:data:`ONLINE_SAFE_CHANGES`); a non-finite loss or parameter
    stops the run with :class:`~offrl.errors.TrainingDiverged` and ``"status": "diverged"``.
    """
    spec = env_spec(cfg.env_id)
    algo_cls = get_algorithm(cfg.algo)
    if not algo_cls.can_explore():
        raise ValueError(
            f"{cfg.algo} cannot explore: online training needs an algorithm that implements "
            "Algorithm.explore() (e.g. sac)"
        )
    algo = algo_cls(spec, algo_cls.config_class.from_dict(cfg.algo_config), cfg.seed, cfg.device)
    return run_online(cfg, algo, resume, allow_changes)


@dataclass
class OnlinePlan:
    """What offline-to-online fine-tuning (:mod:`offrl.train.finetune`) changes in the online
    loop; :func:`train_online` runs without one."""

    make_sampler: Callable[[ReplayBuffer], Any]
    """Given the replay buffer, the object whose ``sample(step) -> Batch`` makes every batch
    (with ``state_dict`` / ``load_state_dict``; optional ``last_metrics`` are logged)."""
    on_episode_end: Callable[[ReplayBuffer, np.ndarray], None]
    """Called with the buffer positions of each episode that ends, in order."""
    config: dict[str, Any]
    """Extra entries of ``config.json``."""
    summary: Callable[[list[float], list[dict[str, Any]]], dict[str, Any]]
    """Extra entries of ``final.json``, from every training episode's return and the run's
    metric records."""
    evaluate_first: bool = True
    """Evaluate the policy before the first environment step (the starting score)."""
    schedule_steps: int = 0
    """Length of the algorithm's fine-tuning schedule: ``Algorithm.finetune_progress(step,
    schedule_steps)`` is called before each step's updates (0: the run's ``steps``)."""


def run_online(
    cfg: OnlineConfig,
    algo: Algorithm,
    resume: bool = False,
    allow_changes: Iterable[str] = (),
    plan: OnlinePlan | None = None,
    safe_changes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The online loop of :func:`train_online`, with ``algo`` already built (and, for
    fine-tuning, trained offline) and ``plan``'s changes; ``safe_changes`` adds options a
    resume may change."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = cfg.run_dir()
    latest = run / "checkpoints" / "latest.pt"
    if not resume and latest.exists():
        raise FileExistsError(f"{run} already holds a run: pass --resume, or choose another --out")
    for d in (run, latest.parent, run / "snapshots"):
        remove_stale_temps(d)
    spec = algo.spec
    low, high = spec.bounds()
    probe = gym.make(cfg.env_id)
    frames = probe.observation_space.dtype == np.uint8  # frames stay bytes; the rest float32
    obs_dtype = np.uint8 if frames else np.float32
    probe.close()
    buffer = ReplayBuffer(
        cfg.buffer_size, spec.obs_shape, spec.action_dim, low, high, spec.discrete, obs_dtype
    )
    sampler = plan.make_sampler(buffer) if plan is not None else None
    rng = np.random.default_rng(cfg.seed)  # the uniform warm-up actions
    sample_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, next_episode, restarts = 0, 0, 0
    resumes: list[dict[str, Any]] = []
    saved_envs: dict[str, Any] | None = None  # the simulators, where they could be saved
    loop: dict[str, Any] = {}
    if resume and latest.exists():
        state = load_latest(latest.parent)  # the buffer stays in host memory; the algorithm
        changes = resume_changes(
            run,
            state.get("online_config", {}),
            dataclasses.asdict(cfg),
            allow_changes,
            (*ONLINE_SAFE_CHANGES, *safe_changes),
        )
        resumes = [*previous_resumes(run), {"step": int(state["step"]), "changed": changes}]
        algo.load_state_dict(state["algo"])  # moves its own state to its device
        buffer.load_state_dict(state["buffer"])
        if sampler is not None:
            sampler.load_state_dict(state["sampler"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        restore_generator(sample_gen, state["sample_generator"], cfg.seed + 1)
        step, next_episode = int(state["step"]), int(state["next_episode"])
        saved_envs, loop = state.get("env_state"), dict(state.get("loop") or {})
        restarts = int(state["restarts"]) + (saved_envs is None)
        if saved_envs is None:
            # The episodes in flight died with the process: they end here, truncated.
            open_eps = np.unique(buffer.episode[: buffer.size][~_ended(buffer)])
            for e in open_eps:
                where = np.flatnonzero(buffer.episode[: buffer.size] == e)
                buffer.timeouts[where[-1]] = True
                if plan is not None:
                    plan.on_episode_end(buffer, where)
    run.mkdir(parents=True, exist_ok=True)
    resolved = {
        "online": dataclasses.asdict(cfg),
        "algo": algo.config.to_dict(),
        "spec": spec.to_dict(),
        "offrl_version": __version__,
        "torch_version": torch.__version__,
        "gymnasium_version": gym.__version__,
        "resumes": resumes,
        **(plan.config if plan is not None else {}),
    }
    write_json(run / "config.json", resolved)
    logger = MetricLogger(
        run,
        tensorboard=cfg.tensorboard,
        wandb=cfg.wandb,
        config=resolved,
        resume_step=step if resume else None,
    )

    guard = DivergenceGuard(algo, run_options={})
    envs = gym.make_vec(cfg.env_id, num_envs=cfg.num_envs, vectorization_mode="sync")
    # Each (re)start seeds the environments differently, so a resumed run does not replay the
    # episodes it already collected.
    obs, _ = envs.reset(seed=cfg.seed + 1_000_003 * restarts)
    if saved_envs is not None:  # the simulators, and the loop's view of them, as they were
        restore_env_state(envs, saved_envs)
        obs = loop["obs"].numpy().copy()
        episode = loop["episode"].numpy().copy()
        ep_return = loop["ep_return"].numpy().copy()
        skip = loop["skip"].numpy().copy()
        ep_rows = [list(map(int, r)) for r in loop.get("ep_rows", [[]] * cfg.num_envs)]
    else:
        ep_rows = [[] for _ in range(cfg.num_envs)]  # buffer positions of each running episode
        episode = next_episode + np.arange(cfg.num_envs)
        next_episode += cfg.num_envs
        ep_return = np.zeros(cfg.num_envs)
        # NEXT_STEP autoreset: the step after an episode ends is a reset whose transition is
        # void.
        skip = np.zeros(cfg.num_envs, dtype=bool)

    def checkpoint(pending_eval: bool, pending_snapshot: bool) -> None:
        guard.check_parameters(step)  # never save a diverged network
        save_checkpoint(
            latest,
            {
                "algo": algo.state_dict(),
                "buffer": buffer.state_dict(),
                **({"sampler": sampler.state_dict()} if sampler is not None else {}),
                "numpy_rng": json.dumps(rng.bit_generator.state),
                "sample_generator": sample_gen.get_state(),
                "step": step,
                "next_episode": next_episode,
                "restarts": restarts,
                "env_id": cfg.env_id,
                "online_config": dataclasses.asdict(cfg),
                "env_state": save_env_state(envs),
                "loop": {
                    "obs": torch.from_numpy(np.array(obs)),
                    "episode": torch.from_numpy(np.array(episode)),
                    "ep_return": torch.from_numpy(np.array(ep_return, dtype=np.float64)),
                    "skip": torch.from_numpy(np.array(skip, dtype=bool)),
                    # What the next log record averages, and what was due after the checkpoint.
                    "sums": dict(sums),
                    "count": count,
                    "returns": list(returns),
                    "all_returns": list(all_returns),
                    "ep_rows": [list(r) for r in ep_rows],
                    "logged_at": logged_at,
                    "pending_eval": pending_eval,
                    "pending_snapshot": pending_snapshot,
                },
            },
        )

    def do_eval() -> dict[str, Any]:
        metrics = evaluate(algo, cfg.env_id, cfg.eval_episodes, seed=cfg.eval_seed).as_dict()
        logger.log(step, "eval", metrics)
        return metrics

    sums: dict[str, float] = {k: float(v) for k, v in loop.get("sums", {}).items()}
    count, logged_at = int(loop.get("count", 0)), int(loop.get("logged_at", step))
    returns: list[float] = [float(r) for r in loop.get("returns", [])]
    all_returns: list[float] = [float(r) for r in loop.get("all_returns", [])]
    last_eval: dict[str, Any] = {}
    if plan is not None and plan.evaluate_first and logger.logged(0, "eval") is None:
        last_eval = do_eval()  # the starting (offline) policy's score, at step 0

    # A run killed between its checkpoint and the evaluation due then does that evaluation now.
    if loop.get("pending_eval") and logger.logged(step, "eval") is None:
        last_eval = do_eval()
        if loop.get("pending_snapshot"):
            _save_snapshot(run / "snapshots" / f"step_{step}.pt", algo, step, last_eval, cfg)
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, disable=not cfg.progress, dynamic_ncols=True)
    try:
        while step < cfg.steps:
            if step < cfg.start_steps:
                actions = spec.uniform_actions(cfg.num_envs, rng)
            else:
                actions = algo.explore(obs)
            next_obs, rew, term, trunc, _ = envs.step(actions)
            keep = ~skip
            written = buffer.add(
                obs[keep],
                actions[keep],
                rew[keep],
                next_obs[keep],
                term[keep],
                (trunc & ~term)[keep],
                episode[keep],
            )
            ep_return += np.where(keep, rew, 0.0)
            for i, pos in zip(np.flatnonzero(keep), written, strict=True):
                ep_rows[i].append(int(pos))
            ended = (term | trunc) & keep
            for i in np.flatnonzero(ended):
                if plan is not None:
                    plan.on_episode_end(buffer, np.asarray(ep_rows[i], dtype=np.int64))
                ep_rows[i] = []
                returns.append(float(ep_return[i]))
                all_returns.append(float(ep_return[i]))
                ep_return[i] = 0.0
                episode[i] = next_episode
                next_episode += 1
            skip = ended
            obs = next_obs
            prev, step = step, step + int(keep.sum())
            bar.update(step - prev)
            if step >= cfg.start_steps:
                if plan is not None:
                    algo.finetune_progress(step, plan.schedule_steps or cfg.steps)
                for _ in range(cfg.updates_per_step * int(keep.sum())):
                    if sampler is not None:
                        batch = sampler.sample(step)
                    else:
                        batch = buffer.sample(algo.config.batch_size, sample_gen)
                    metrics = guard.update(step, batch.to(algo.device), algo.update)
                    metrics = {**metrics, **getattr(sampler, "last_metrics", {})}
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
            if _crossed(prev, step, cfg.log_every):
                record: dict[str, Any] = {k: v / max(count, 1) for k, v in sums.items()}
                record["env_steps_per_s"] = (step - logged_at) / (time.perf_counter() - t0)
                if returns:
                    record["rollout/return_mean"] = float(np.mean(returns))
                    record["rollout/episodes"] = len(returns)
                logger.log(step, "train", record)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items()}, refresh=False)
                sums, count, returns, logged_at, t0 = {}, 0, [], step, time.perf_counter()
            snapshot = cfg.snapshot_every > 0 and _crossed(prev, step, cfg.snapshot_every)
            eval_due = _crossed(prev, step, cfg.eval_every) or step >= cfg.steps or snapshot
            if _crossed(prev, step, cfg.checkpoint_every) or step >= cfg.steps:
                checkpoint(eval_due, snapshot)  # before the evaluation: a failing one loses none
            if eval_due:
                e0 = time.perf_counter()
                last_eval = do_eval()  # every snapshot is saved with its own evaluation
                bar.set_description(f"return {last_eval['eval/return_mean']:.1f}")
                t0 += time.perf_counter() - e0  # evaluation time is not collection time
            if snapshot:
                _save_snapshot(run / "snapshots" / f"step_{step}.pt", algo, step, last_eval, cfg)
    except TrainingDiverged as exc:
        bar.close()
        envs.close()
        logger.log(step, "diverged", {"quantity": exc.diagnosis.get("quantity")})
        logger.close()
        summary = {"algo": cfg.algo, "env_id": cfg.env_id, "seed": cfg.seed, "steps": cfg.steps}
        write_json(
            run / "final.json",
            {**summary, "status": "diverged", "diagnosis": exc.diagnosis},
        )
        raise TrainingDiverged(
            f"{exc} The run stopped: {run / 'final.json'} has the diagnosis; "
            + (f"{latest} holds the last good state." if latest.exists() else "no checkpoint."),
            exc.diagnosis,
        ) from None
    bar.close()
    envs.close()
    if not last_eval:  # resumed a finished run: its final evaluation is logged already
        last_eval = logger.logged(step, "eval") or do_eval()
    final_eval = logged_final_evaluation(
        algo, cfg.env_id, cfg.final_eval_episodes, cfg.eval_seed, logger, step
    )
    logger.close()
    final = {
        "algo": cfg.algo,
        "env_id": cfg.env_id,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "status": "completed",
        "return_mean": last_eval.get("eval/return_mean"),
        "return_std": last_eval.get("eval/return_std"),
        "normalized_score": last_eval.get("eval/normalized_score"),
        "eval_episodes": cfg.eval_episodes,
        "final_eval": final_eval,
        **(plan.summary(all_returns, read_metrics(run / "metrics.jsonl")) if plan else {}),
    }
    write_json(run / "final.json", final)
    return final


def _crossed(prev: int, now: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(prev, now]``."""
    return every > 0 and now // every > prev // every


def _ended(buffer: ReplayBuffer) -> np.ndarray:
    """Per stored transition: does its episode have an ending step in the buffer?"""
    n = buffer.size
    ends = buffer.terminals[:n] | buffer.timeouts[:n]
    closed = np.unique(buffer.episode[:n][ends])
    return np.isin(buffer.episode[:n], closed)


def _save_snapshot(
    path: Path, algo: Algorithm, step: int, evaluation: dict[str, Any], cfg: OnlineConfig
) -> None:
    """Policy weights only (float32), with what is needed to rebuild and judge them."""
    actor = algo.snapshot_policy()
    if actor is None:
        return
    save_checkpoint(
        path,
        {
            "algo": algo.name,
            "env_id": cfg.env_id,
            "spec": algo.spec.to_dict(),
            "config": algo.config.to_dict(),
            "step": step,
            "seed": cfg.seed,
            "return_mean": evaluation.get("eval/return_mean"),
            "return_std": evaluation.get("eval/return_std"),
            "actor": actor.state_dict(),
            "obs_mean": algo.obs_mean,
            "obs_std": algo.obs_std,
        },
    )
