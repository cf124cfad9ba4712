"""The step-based offline training loop.

``train(TrainConfig(...))`` loads a dataset, builds the algorithm from the registry, and runs
``steps`` gradient updates, evaluating every ``eval_every`` steps and checkpointing every
``checkpoint_every`` steps. Everything lands in one run directory::

    RUN/config.json        the resolved configuration (train + algorithm + dataset facts)
    RUN/metrics.jsonl      every logged record (also metrics.csv, TensorBoard, W&B if asked)
    RUN/checkpoints/       step_<N>.pt and latest.pt (atomic, weights_only-loadable)
    RUN/curve.png          the learning curve
    RUN/final.json         the last evaluation (return, normalised score), steps, seed, and
                           the final evaluation: every episode of ``final_eval_episodes``

A killed run continues with ``resume=True``: the algorithm, optimiser and sampler states come
back from ``latest.pt`` (or, if that is damaged, the newest intact ``step_<N>.pt``), so the
resumed run draws the same batches and ends with the same parameters as an uninterrupted one.
Resuming with other options or other data than the run was trained with is refused
(:class:`~offrl.errors.ResumeError` lists the differences); ``allow_changes`` admits the safe
ones (:data:`SAFE_RESUME_CHANGES`), and ``config.json`` records them under ``"resumes"``.

Before the first update the dataset is checked against the evaluation environment and the
algorithm; during training :class:`~offrl.train.guard.DivergenceGuard` stops a run whose
losses, Q-values or parameters become non-finite (``final.json`` then has ``"status":
"diverged"`` and a diagnosis, and :class:`~offrl.errors.TrainingDiverged` is raised). A
checkpoint is written before each evaluation, so a failing evaluation loses no training.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from offrl._version import __version__
from offrl.algos import get_algorithm
from offrl.algos.base import Algorithm, EnvSpec
from offrl.config import check_options
from offrl.data.augment import AugmentedSampler, canonical_specs, check_augmentable
from offrl.data.dataset import Dataset
from offrl.data.frames import FrameDataset, FrameSampler, is_frames_file, load_frames
from offrl.data.loaders import load_dataset
from offrl.data.normalization import ObsNormalizer, RewardTransform, preprocess
from offrl.data.registry import progress_to
from offrl.data.sampler import Sampler, TensorSampler
from offrl.data.tianshou_files import load_tianshou, tianshou_frame_stack
from offrl.envs import register_envs
from offrl.errors import ConfigError, IncompatibleDataError, ResumeError, TrainingDiverged
from offrl.io import write_json
from offrl.train.checkpoint import (
    SAFE_RESUME_CHANGES,
    load_latest,
    previous_resumes,
    remove_stale_temps,
    resume_changes,
    save_checkpoint,
)
from offrl.train.evaluation import evaluate, final_evaluation, logged_final_evaluation
from offrl.train.graphs import GraphedUpdate
from offrl.train.guard import DivergenceGuard
from offrl.train.loggers import MetricLogger, read_metrics

__all__ = [
    "TrainConfig",
    "train",
    "final_evaluation",
    "spec_for",
    "build_run",
    "load_training_data",
    "plot_curves",
    "SAFE_RESUME_CHANGES",
]


@dataclass
class TrainConfig:
    """One offline training run."""

    algo: str = "td3bc"
    """Registered algorithm name (``offrl algos`` lists them)."""
    dataset: str = "pendulum-medium-v0"
    """A built-in dataset name or a path (.npz, D4RL .hdf5, Minari directory)."""
    out: str = ""
    """Run directory (default ``runs/<algo>-<dataset>-s<seed>``)."""
    steps: int = 20_000
    """Gradient updates."""
    seed: int = 0
    """Seeds network initialisation, batch sampling and the algorithm's noise."""
    eval_every: int = 5_000
    """Evaluate every this many steps (and at the end); 0 disables intermediate evaluation."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actions, envs seeded ``eval_seed + i``)."""
    eval_seed: int = 10_000
    """First environment seed of evaluation episodes (kept apart from training seeds)."""
    final_eval_episodes: int = 100
    """Evaluate the final policy over this many episodes at the end (envs seeded ``eval_seed +
    i``), and keep every episode's return and normalised score in ``final.json``
    (``final_eval``): the many-episode estimate that the report's confidence intervals and
    policy selection use. 0 skips it."""
    log_every: int = 1_000
    """Average training metrics over this many steps per logged record."""
    checkpoint_every: int = 5_000
    """Write ``checkpoints/latest.pt`` (and ``step_<N>.pt``) every this many steps."""
    norm_obs: bool = True
    """Normalise observations with dataset statistics (saved in the checkpoint)."""
    data_fraction: float = 1.0
    """Train on a seeded random fraction of the dataset's episodes (the dataset-size ablation:
    0.1, 0.01...)."""
    data_seed: int = 0
    """Seed of the episode subsample (``data_fraction < 1``)."""
    reward_mode: Literal["none", "return_range"] | None = None
    """Reward transform: ``none``, or ``return_range`` (divide by the dataset's range of episode
    returns, times 1000); unset, the algorithm's own ``reward_mode`` option decides."""
    reward_scale: float = 1.0
    """Multiply rewards by this (after ``reward_mode``)."""
    reward_shift: float = 0.0
    """Add this to rewards (after scaling)."""
    augment: tuple[str, ...] = ()
    """Data augmentation of the observations in every batch (:mod:`offrl.data.augment`, S4RL's
    transforms), applied in order: specs such as ``gaussian``, ``gaussian:std=1e-3``,
    ``uniform:bound=3e-4``, ``scale:low=0.8,high=1.2``, ``mixup:alpha=0.4``. Stored with every
    option written out (``gaussian:std=0.0003,next_obs=true``). Continuous state vectors only."""
    augment_space: Literal["raw", "normalized"] = "raw"
    """Where ``augment`` perturbs the states: ``raw`` (the dataset's units, as S4RL; the batch
    still reaches the algorithm normalised) or ``normalized`` (after ``norm_obs``: one unit is
    one standard deviation of the dimension)."""
    env_id: str | None = None
    """Evaluation environment (default: the dataset's ``env_id``)."""
    threads: int | None = None
    """``torch.set_num_threads`` (default: leave PyTorch's choice)."""
    device: str = "cpu"
    """Torch device."""
    cuda_graphs: bool = False
    """On a CUDA device, replay the updates from CUDA graphs (:mod:`offrl.train.graphs`; TD3+BC
    and BC: several times the updates per second of a small network)."""
    tensorboard: bool = False
    """Also log to TensorBoard."""
    wandb: bool = False
    """Also log to Weights & Biases (offline mode unless WANDB_MODE is set)."""
    progress: bool = True
    """Show a progress bar with live metrics."""
    algo_config: dict[str, Any] = field(default_factory=dict)
    """Overrides of the algorithm's config fields (e.g. ``{"alpha": 2.5}``)."""

    def __post_init__(self) -> None:
        check_options(self)  # types and ranges, with a message naming the option
        self.augment = canonical_specs(self.augment)  # unknown names, options, values: refused
        if self.final_eval_episodes < 0:
            raise ConfigError(
                f"option final_eval_episodes: {self.final_eval_episodes!r} is outside [0, inf) "
                "(TrainConfig.final_eval_episodes)"
            )

    def run_dir(self) -> Path:
        """The run directory."""
        name = Path(self.dataset).stem if os.sep in self.dataset else self.dataset
        return Path(self.out or f"runs/{self.algo}-{name}-s{self.seed}")


def spec_for(dataset: Dataset | FrameDataset, env_id: str | None) -> EnvSpec:
    """Observation/action spec from the environment when known, else from the data.

    With an environment, the dataset's observation shape, action kind and width, and action
    values are checked against its spaces (a clear error names the field, and for values the
    offending row and dimension).
    """
    if env_id is not None:
        import gymnasium as gym

        try:
            register_envs()  # offrl's MinAtar / Atari ids
            env = gym.make(env_id)
        except Exception as exc:  # gymnasium's errors for unknown ids, missing extras...
            raise ConfigError(f"env_id: cannot make the environment {env_id!r} ({exc})") from exc
        space, obs_space = env.action_space, env.observation_space
        env.close()
        obs_env = tuple(getattr(obs_space, "shape", None) or ())
        if obs_env and tuple(dataset.obs_shape) != obs_env:
            raise IncompatibleDataError(
                f"observations: the dataset's have shape {tuple(dataset.obs_shape)}, and "
                f"{env_id}'s {obs_env}: the data does not come from this environment"
            )
        if isinstance(space, gym.spaces.Discrete):
            if not dataset.discrete:
                raise IncompatibleDataError(
                    f"actions: {env_id} has {int(space.n)} discrete actions, and the dataset's "
                    f"actions are continuous vectors of width {dataset.action_dim}"
                )
            dataset.check_action_space(0, int(space.n))
            return EnvSpec(dataset.obs_shape, int(space.n), discrete=True)
        if not isinstance(space, gym.spaces.Box):
            raise IncompatibleDataError(f"actions: {env_id}'s action space {space} is unsupported")
        width = int(np.prod(space.shape))
        if dataset.discrete or dataset.action_dim != width:
            kind = "integer indices" if dataset.discrete else f"width {dataset.action_dim}"
            raise IncompatibleDataError(
                f"actions: the dataset's actions have {kind}, and {env_id}'s are continuous "
                f"of width {width}"
            )
        dataset.check_action_space(space.low, space.high)
        return EnvSpec(
            dataset.obs_shape,
            int(np.prod(space.shape)),
            action_low=tuple(float(x) for x in space.low.ravel()),
            action_high=tuple(float(x) for x in space.high.ravel()),
        )
    if dataset.discrete:
        return EnvSpec(dataset.obs_shape, dataset.action_dim, discrete=True)
    # No environment: assume the data spans the action space (D4RL-style [-1, 1] if it fits).
    low, high = dataset.actions.min(0), dataset.actions.max(0)
    if low.min() >= -1.0 and high.max() <= 1.0:
        low, high = -np.ones_like(low), np.ones_like(high)
    return EnvSpec(
        dataset.obs_shape,
        dataset.action_dim,
        action_low=tuple(float(x) for x in low),
        action_high=tuple(float(x) for x in high),
    )


def _say(message: str) -> None:
    print(f"offrl: {message}", file=sys.stderr, flush=True)


def load_training_data(
    name: str, progress: Callable[[str], None] | None = None
) -> Dataset | FrameDataset:
    """What ``--dataset`` names, as the trainer reads it: frames stored once each
    (:class:`~offrl.data.frames.FrameDataset`) for an offrl frames file and for a Tianshou
    buffer of single frames (the Atari recipe); :func:`~offrl.data.load_dataset` otherwise."""
    if is_frames_file(name):
        return load_frames(name)
    if tianshou_frame_stack(name):
        return load_tianshou(name, frames=True)
    return load_dataset(name, progress=progress)


def build_run(
    cfg: TrainConfig,
) -> tuple[
    Algorithm,
    TensorSampler | FrameSampler,
    Dataset | FrameDataset,
    Dataset | FrameDataset,
    str | None,
    tuple[float, float],
]:
    """What a run trains: the algorithm (fresh, with the data's observation statistics), its
    sampler, the whole dataset, the prepared training data, the env id and the reward
    transform as ``(a, b)``, ``r' = a r + b`` (fine-tuning puts online rewards through it).

    Frames stored once each (:class:`~offrl.data.frames.FrameDataset`) are trained on as they
    are: bytes, all transitions (no ``prepare_data`` / ``attach_data``), batches stacked by a
    :class:`~offrl.data.frames.FrameSampler`."""
    dataset = load_training_data(cfg.dataset, progress=_say if cfg.progress else None)
    if cfg.data_fraction < 1.0:
        dataset = dataset.subsample_episodes(cfg.data_fraction, cfg.data_seed)
    env_id = cfg.env_id or dataset.env_id
    spec = spec_for(dataset, env_id)
    algo_cls = get_algorithm(cfg.algo)
    # Options that span "the run" (IQL's actor learning-rate schedule) take this run's length.
    algo_cfg = algo_cls.config_class.from_dict(cfg.algo_config).for_run(cfg.steps)
    algo = algo_cls(spec, algo_cfg, seed=cfg.seed, device=cfg.device)
    reward = RewardTransform(
        cfg.reward_mode or algo_cfg.reward_mode, cfg.reward_scale, cfg.reward_shift
    )
    if isinstance(dataset, FrameDataset):
        algo.set_normalizer(ObsNormalizer.identity(dataset.obs_shape))
        frames = dataclasses.replace(dataset, rewards=reward.apply(dataset))
        frame_sampler = FrameSampler(
            frames, algo.data_batch_size(), cfg.seed, cfg.device, **algo.sampler_options()
        )
        return algo, frame_sampler, dataset, frames, env_id, reward.affine(dataset)
    # The algorithm picks the transitions it trains on (all by default; %BC keeps its best
    # episodes) before statistics are computed. ``dataset`` stays the whole data: its returns
    # describe the behaviour policy in config.json and final.json.
    train_data = algo.prepare_data(dataset)
    normalizer = ObsNormalizer.for_run(train_data, cfg.norm_obs)
    algo.set_normalizer(normalizer)
    prepared = preprocess(train_data, normalizer, reward, spec.action_low, spec.action_high)
    # Before any load_state_dict; Batch.rows index ``prepared``. A model-based algorithm trains
    # (or loads) its dynamics model here, reporting as a dataset build does.
    with progress_to(_say if cfg.progress else None):
        algo.attach_data(prepared)
    sampler = TensorSampler(
        prepared,
        algo.data_batch_size(),
        seed=cfg.seed,
        device=cfg.device,
        **algo.sampler_options(),
    )
    return algo, sampler, dataset, prepared, env_id, reward.affine(train_data)


def _augmented(
    cfg: TrainConfig,
    sampler: TensorSampler | FrameSampler,
    algo: Algorithm,
    data: Dataset | FrameDataset,
) -> Sampler:
    """``sampler`` wrapped in the run's augmentation (:mod:`offrl.data.augment`), if any."""
    if not cfg.augment:
        return sampler
    if isinstance(data, FrameDataset) or isinstance(sampler, FrameSampler):
        raise ConfigError("option augment: the augmentations act on vector observations")
    check_augmentable(data, cfg.augment)
    raw = cfg.augment_space == "raw" and cfg.norm_obs  # without norm_obs the batch is raw
    return AugmentedSampler(
        sampler,
        cfg.augment,
        seed=cfg.seed,
        device=cfg.device,
        normalizer=algo.normalizer() if raw else None,
    )


def _eval_due(cfg: TrainConfig, step: int) -> bool:
    return bool(cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps


def _checkpoint_due(cfg: TrainConfig, step: int) -> bool:
    return step % cfg.checkpoint_every == 0 or step == cfg.steps


def train(
    cfg: TrainConfig, resume: bool = False, allow_changes: Iterable[str] = ()
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) one training run; returns the final summary.

    Args:
        cfg: the run.
        resume: continue the run in ``cfg.run_dir()`` from its newest intact checkpoint.
        allow_changes: options of :data:`SAFE_RESUME_CHANGES` that may differ from the run's
            (``steps`` to train longer, say); any other difference is refused.

    Raises:
        TrainingDiverged: a loss, Q-value or parameter became non-finite (``final.json`` has
            the diagnosis; the last checkpoint before it is kept).
        ResumeError: ``resume`` with other options or other data than the run's.
        FileExistsError: the run directory already holds a run and ``resume`` is off.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = cfg.run_dir()
    ckpt_dir = run / "checkpoints"
    has_run = (ckpt_dir / "latest.pt").exists() or any(ckpt_dir.glob("step_*.pt"))
    if not resume and has_run:
        raise FileExistsError(f"{run} already holds a run: pass --resume, or choose another --out")
    for d in (run, ckpt_dir):  # what a kill in the middle of an atomic write left behind
        remove_stale_temps(d)
    state: dict[str, Any] | None = None
    changes: dict[str, list[Any]] = {}
    if resume and has_run:
        state = load_latest(ckpt_dir, cfg.device)
        changes = resume_changes(
            run, state.get("train_config", {}), dataclasses.asdict(cfg), allow_changes
        )
    algo, base_sampler, dataset, prepared, env_id, _ = build_run(cfg)
    sampler = _augmented(cfg, base_sampler, algo, dataset)
    fingerprint = dataset.fingerprint()
    # Captures lazily, after any checkpoint below is loaded (offrl.train.graphs).
    update = GraphedUpdate(algo).update if cfg.cuda_graphs else algo.update
    start = 0
    if state is not None:
        saved_fp = state.get("dataset_fingerprint")
        if saved_fp is not None and saved_fp != fingerprint:
            raise ResumeError(
                f"--resume: {run} was trained on other data (dataset fingerprint {saved_fp}, "
                f"now {fingerprint} for {cfg.dataset!r}); resume with the run's dataset"
            )
        saved_on = torch.device(state.get("train_config", {}).get("device", "cpu")).type
        if saved_on != torch.device(cfg.device).type:
            warnings.warn(
                f"{run}: resuming on {cfg.device} a run checkpointed on {saved_on}; the random "
                "generators are re-seeded and the run will not match an uninterrupted one",
                stacklevel=2,
            )
        algo.load_state_dict(state["algo"])
        sampler.load_state_dict(state["sampler"])
        start = int(state["step"])
    stats = dataset.stats()
    resumes = previous_resumes(run) if state is not None else []
    if state is not None:
        resumes.append({"step": start, "changed": changes})
    resolved = {
        "train": dataclasses.asdict(cfg),
        "algo": algo.config.to_dict(),
        "algo_name": cfg.algo,
        "env_id": env_id,
        "dataset": {
            "name": cfg.dataset,
            "fingerprint": fingerprint,
            "transitions": stats.num_transitions,
            "transitions_trained_on": base_sampler.size,  # after the algorithm's prepare_data
            "episodes": stats.num_episodes,
            "return_mean": stats.return_mean,
            "metadata": dataset.metadata,
        },
        "resumes": resumes,
        "offrl_version": __version__,
        "torch_version": torch.__version__,
    }
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", resolved)
    logger = MetricLogger(
        run,
        tensorboard=cfg.tensorboard,
        wandb=cfg.wandb,
        config=resolved,
        resume_step=start if state is not None else None,
    )
    r = prepared.rewards
    guard = DivergenceGuard(
        algo,
        reward_bound=float(max(-r.min(), r.max())) if r.size else None,  # max |r|, no copy
        run_options={"reward_scale": cfg.reward_scale, "norm_obs": cfg.norm_obs},
    )

    def do_eval(step: int) -> dict[str, Any]:
        if env_id is None:
            return {}
        result = evaluate(algo, env_id, cfg.eval_episodes, seed=cfg.eval_seed)
        metrics = result.as_dict()
        logger.log(step, "eval", metrics)
        return metrics

    last_checkpoint = start if state is not None else None

    def checkpoint(step: int) -> None:
        nonlocal last_checkpoint
        guard.check_parameters(step)  # never save a diverged network
        ckpt = {
            "algo": algo.state_dict(),
            "sampler": sampler.state_dict(),
            "step": step,
            "env_id": env_id,
            "train_config": dataclasses.asdict(cfg),
            "dataset_fingerprint": fingerprint,
            # The metrics of the steps since the last log: a run resumed between two logs
            # averages the same steps into its next record as an uninterrupted one.
            "log_accumulator": {"sums": dict(sums), "count": count},
        }
        save_checkpoint(ckpt_dir / f"step_{step}.pt", ckpt)
        save_checkpoint(ckpt_dir / "latest.pt", ckpt)
        last_checkpoint = step

    summary = {
        "algo": cfg.algo,
        "dataset": cfg.dataset,
        "env_id": env_id,
        "seed": cfg.seed,
        "steps": cfg.steps,
    }
    accumulated = state.get("log_accumulator", {}) if state is not None else {}
    sums: dict[str, float] = {k: float(v) for k, v in accumulated.get("sums", {}).items()}
    count = int(accumulated.get("count", 0))
    last_eval: dict[str, Any] = {}
    step = start
    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress, dynamic_ncols=True)
    try:
        # A run killed during an evaluation resumes from the checkpoint just before it.
        if 0 < start < cfg.steps and _eval_due(cfg, start) and logger.logged(start, "eval") is None:
            last_eval = do_eval(start)
        t0 = time.perf_counter()
        for step in range(start + 1, cfg.steps + 1):
            metrics = guard.update(step, sampler.sample(), update)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                means = {k: v / count for k, v in sums.items()}
                means["updates_per_s"] = count / (time.perf_counter() - t0)
                logger.log(step, "train", means)
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()}, refresh=False)
                sums, count, t0 = {}, 0, time.perf_counter()
            if _checkpoint_due(cfg, step):
                checkpoint(step)  # before the evaluation: a failing one loses no training
            if _eval_due(cfg, step):
                last_eval = do_eval(step)
                if last_eval.get("eval/normalized_score") is not None:
                    bar.set_description(f"score {last_eval['eval/normalized_score']:.1f}")
                t0 = time.perf_counter()  # evaluation time is not update time
            bar.update(1)
    except TrainingDiverged as exc:
        bar.close()
        logger.log(step, "diverged", {"quantity": exc.diagnosis.get("quantity")})
        logger.close()
        write_json(
            run / "final.json",
            {
                **summary,
                "status": "diverged",
                "diverged_at_step": exc.diagnosis.get("step"),
                "diagnosis": exc.diagnosis,
                "last_checkpoint_step": last_checkpoint,
                "warnings": guard.warnings,
            },
        )
        kept = (
            f"its last good checkpoint is step {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written before it"
        )
        raise TrainingDiverged(
            f"{exc} The run stopped: {run / 'final.json'} has the diagnosis; {kept}.",
            exc.diagnosis,
        ) from None
    bar.close()
    if not last_eval:  # resumed a finished run: report its final evaluation again
        # It was logged before the kill; evaluating again would log it twice.
        last_eval = logger.logged(cfg.steps, "eval") or do_eval(cfg.steps)
    # The many-episode evaluation of the final policy. It runs after the last checkpoint and
    # before final.json, so a run killed during it resumes at the end and does it again.
    final_eval = None
    if env_id is not None:
        final_eval = logged_final_evaluation(
            algo, env_id, cfg.final_eval_episodes, cfg.eval_seed, logger, cfg.steps
        )
    logger.close()
    final = {
        **summary,
        "status": "completed",
        "return_mean": last_eval.get("eval/return_mean"),
        "return_std": last_eval.get("eval/return_std"),
        "normalized_score": last_eval.get("eval/normalized_score"),
        "normalized_score_std": last_eval.get("eval/normalized_score_std"),
        "eval_episodes": cfg.eval_episodes,
        "final_eval": final_eval,
        "behaviour_return_mean": stats.return_mean,
        **({"algo_info": info} if (info := algo.run_info()) else {}),
        "warnings": guard.warnings,
    }
    write_json(run / "final.json", final)
    plot_curves([run], run / "curve.png")
    return final


def plot_curves(runs: list[Path], out: Path, title: str | None = None) -> Path:
    """Plot evaluation curves (normalised score if known, else return) of run directories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ylabel = "return"
    for run in runs:
        evals = [r for r in read_metrics(Path(run) / "metrics.jsonl") if r["kind"] == "eval"]
        if not evals:
            continue
        key = "eval/normalized_score" if evals[0].get("eval/normalized_score") is not None else None
        if key:
            ylabel = "normalised score"
        ys = [r[key] if key else r["eval/return_mean"] for r in evals]
        ax.plot([r["step"] for r in evals], ys, marker="o", label=Path(run).name)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "evaluation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
