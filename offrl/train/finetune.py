"""Offline-to-online fine-tuning: start from an offline policy, keep learning in the environment.

``finetune(FinetuneConfig(...))`` takes an offline run's checkpoint (``init``) -- or trains one
first (``offline_steps`` on ``dataset``, into ``RUN/offline``) -- and continues the same
algorithm online on the dataset's Gymnasium environment for ``steps`` environment steps. Every
update's batch mixes the offline data and the new transitions by one of
:mod:`offrl.train.mixing`'s rules (``mix``; ``auto`` is the algorithm's own recipe,
``Algorithm.finetune_mix``), with ``updates_per_step`` updates per environment step (the
update-to-data ratio). The offline data keeps the offline run's observation statistics and
reward transform, and online transitions are put through the same ones.

Balanced Replay (``--algo balanced_replay``) starts from ``members`` offline CQL runs
(``init`` lists them, or ``offline_steps`` trains them as ``RUN/offline-<i>``, seeds
``seed + 1000 i``) and fine-tunes their ensemble on the density-ratio-prioritised pool.

The run directory is an online run's (:mod:`offrl.train.online`: ``config.json``,
``metrics.jsonl``, ``checkpoints/latest.pt``, ``final.json``), resumable and seeded the same
way: a killed run resumed with ``resume=True`` ends where an uninterrupted one does. The policy
is evaluated before the first online step (the offline policy's score), then every
``eval_every`` steps; ``final.json`` adds what fine-tuning is compared on:

* ``offline_score`` -- the evaluation before any online step;
* ``online_score`` -- the last evaluation, after ``steps`` online steps;
* ``worst_early_score`` and ``initial_drop`` (``offline_score - worst_early_score``) -- the
  lowest evaluation within the first ``drop_window`` online steps: the "initial drop" the first
  seed describes;
* ``regret`` -- CORL's cumulative regret: the mean over the online training episodes of ``1 -
  score`` (score: the episode's D4RL-normalised return / 100; CORL uses the success flag of
  goal tasks, which is the same quantity where success is the only reward).

Scores are D4RL-normalised where the environment has reference returns, else raw returns (then
``regret`` is ``None``). ``curve.png`` shows the offline phase (its evaluations at negative
steps, ``-offline_steps .. 0``, when trained here) and the online one on one axis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl.algos import get_algorithm
from offrl.algos.balanced import BalancedReplay, BalancedReplayConfig
from offrl.algos.base import Algorithm
from offrl.data.dataset import Dataset
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import TensorSampler
from offrl.errors import ConfigError
from offrl.scores import normalized_score
from offrl.train.checkpoint import load_latest
from offrl.train.loggers import read_metrics
from offrl.train.mixing import MIX_RULES, BalancedSampler, MixedSampler, OnlineRows
from offrl.train.online import OnlineConfig, OnlinePlan, run_online
from offrl.train.trainer import TrainConfig, build_run, train

__all__ = ["FinetuneConfig", "finetune", "finetune_summary"]


@dataclass
class FinetuneConfig(OnlineConfig):
    """One offline-to-online fine-tuning run (``steps`` are online environment steps)."""

    algo: str = "iql"
    """The algorithm, offline and online (it must implement ``Algorithm.explore``)."""
    env_id: str = ""
    """Gymnasium environment (default: the dataset's)."""
    steps: int = 100_000
    """Online environment steps."""
    start_steps: int = 0
    """Random-action steps before the policy acts (0: the offline policy acts from the start)."""
    snapshot_every: int = 0
    """Policy snapshots (as ``offrl online``; 0: none)."""
    eval_every: int = 5_000
    """Evaluate every this many online steps (and before the first one)."""
    checkpoint_every: int = 5_000
    """Write ``checkpoints/latest.pt`` every this many online steps."""
    final_eval_episodes: int = 100
    """Episodes of the fine-tuned policy's final evaluation (``final.json``'s ``final_eval``,
    as ``offrl train``'s; 0: none)."""
    init: tuple[str, ...] = ()
    """Offline runs (directories) or checkpoints to start from; Balanced Replay takes one per
    member. Empty: train offline first (``offline_steps``)."""
    dataset: str = ""
    """The offline data (default: the ``init`` run's); needed with ``offline_steps``."""
    offline_steps: int = 0
    """Without ``init``: gradient steps of the offline phase trained first, in ``RUN/offline``
    (the same ``algo``, or Balanced Replay's ``pretrain_algo`` per member)."""
    mix: str = "auto"
    """How batches mix offline and online data: ``keep``, ``drop``, ``ratio``, ``anneal``,
    ``balanced`` (:mod:`offrl.train.mixing`), or ``auto`` (the algorithm's recipe)."""
    offline_ratio: float = 0.5
    """``ratio``: the offline share of every batch; ``anneal``: the share at the start."""
    final_offline_ratio: float = 0.0
    """``anneal``: the offline share after ``anneal_steps``."""
    anneal_steps: int = 0
    """Online steps over which the fine-tuning schedules run (0: all of ``steps``): the
    ``anneal`` rule's offline share, and an algorithm's own (ReBRAC's decaying BC weight,
    :meth:`~offrl.algos.base.Algorithm.finetune_progress`). Set it to extend a run's ``steps``
    on resume with the schedules unchanged."""
    balance_temperature: float = 5.0
    """``balanced``: temperature T of the priorities ``w^(1/T)`` (official code: 5)."""
    density_lr: float = 3e-4
    """``balanced``: learning rate of the density-ratio network (official code: 3e-4)."""
    drop_window: int = 20_000
    """The "initial drop" is the lowest evaluation within this many first online steps."""
    offline_eval_every: int = 5_000
    """Offline phase trained here: evaluate every this many gradient steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.init = tuple(self.init)
        if self.mix != "auto" and self.mix not in MIX_RULES:
            rules = ", ".join(MIX_RULES)
            raise ConfigError(f"option mix: {self.mix!r} is not one of auto, {rules}")
        for name in ("offline_ratio", "final_offline_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"option {name}: {getattr(self, name)!r} is outside [0, 1]")
        if not self.init and (self.offline_steps <= 0 or not self.dataset):
            raise ConfigError(
                "option init: give offline runs to start from, or dataset and offline_steps to "
                "train one first"
            )

    def run_dir(self) -> Path:
        """The run directory."""
        name = Path(self.dataset).stem if self.dataset else Path(self.init[0]).name
        return Path(self.out or f"runs/finetune-{self.algo}-{name}-s{self.seed}")


SAFE_FINETUNE_CHANGES = ("drop_window", "offline_eval_every")
"""Options a resume may change (they only change what is reported)."""


def _checkpoint(path: str | Path) -> dict[str, Any]:
    """The state of an offline run (its directory or one checkpoint file)."""
    p = Path(path)
    if p.is_dir():
        return load_latest(p / "checkpoints" if (p / "checkpoints").is_dir() else p)
    return dict(torch.load(p, map_location="cpu", weights_only=True))


def _offline_phase(cfg: FinetuneConfig, run: Path) -> list[str]:
    """The offline runs to start from: ``cfg.init``, or those trained here first."""
    if cfg.init:
        return list(cfg.init)
    algo_cls = get_algorithm(cfg.algo)
    members, algo, options = 1, cfg.algo, dict(cfg.algo_config)
    if issubclass(algo_cls, BalancedReplay):
        config = BalancedReplayConfig.from_dict(cfg.algo_config)
        assert isinstance(config, BalancedReplayConfig)
        members, algo, options = config.members, config.pretrain_algo, config.member_options()
    runs = []
    for i in range(members):
        out = run / ("offline" if members == 1 else f"offline-{i}")
        if not (out / "final.json").exists():
            offline = TrainConfig(
                algo=algo,
                dataset=cfg.dataset,
                out=str(out),
                steps=cfg.offline_steps,
                seed=cfg.seed + 1000 * i,
                eval_every=cfg.offline_eval_every,
                eval_episodes=cfg.eval_episodes,
                eval_seed=cfg.eval_seed,
                checkpoint_every=min(cfg.checkpoint_every, cfg.offline_steps),
                final_eval_episodes=0,
                threads=cfg.threads,
                device=cfg.device,
                progress=cfg.progress,
                algo_config=options,
            )
            train(offline, resume=(out / "checkpoints").exists())
        runs.append(str(out))
    return runs


def finetune(
    cfg: FinetuneConfig, resume: bool = False, allow_changes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) one fine-tuning run; returns ``final.json``'s
    content. Raises as :func:`offrl.train.online.train_online` does."""
    run = cfg.run_dir()
    init = _offline_phase(cfg, run)
    states = [_checkpoint(p) for p in init]
    train_cfg = dict(states[0].get("train_config") or {})
    if not train_cfg:
        raise ConfigError(f"option init: {init[0]} is not an offline run's checkpoint")
    if cfg.dataset:
        train_cfg["dataset"] = cfg.dataset
    train_cfg.update(out=str(run / "offline-data"), progress=cfg.progress, device=cfg.device)
    first, offline, _, prepared, env_id, (reward_a, reward_b) = build_run(TrainConfig(**train_cfg))
    if not isinstance(prepared, Dataset) or not isinstance(offline, TensorSampler):
        raise ConfigError("option dataset: fine-tuning reads vector data, not stored frames")
    first.load_state_dict(states[0]["algo"])
    env_id = cfg.env_id or env_id
    if not env_id:
        raise ConfigError("option env_id: the dataset names no environment; pass env_id")
    algo_cls = get_algorithm(cfg.algo)
    if issubclass(algo_cls, BalancedReplay):
        members = [first] + [Algorithm.from_state_dict(s["algo"], cfg.device) for s in states[1:]]
        config = BalancedReplayConfig.from_dict(cfg.algo_config)
        assert isinstance(config, BalancedReplayConfig)
        algo: Algorithm = algo_cls.from_members(members, config, cfg.seed, cfg.device)
    elif first.name != cfg.algo:
        raise ConfigError(f"option init: {init[0]} trained {first.name}, not {cfg.algo}")
    else:
        algo = first
    if not algo.can_explore():
        raise ConfigError(f"option algo: {cfg.algo} cannot act online (no Algorithm.explore)")
    if algo.data_batch_size() != algo.config.batch_size:
        raise ConfigError(f"option algo: fine-tuning {cfg.algo} (model-based) is unsupported")
    mix = algo.finetune_mix if cfg.mix == "auto" else cfg.mix
    schedule_steps = cfg.anneal_steps or cfg.steps  # the anneal rule's and the algorithm's
    gamma = float(algo.config.gamma)
    # The mixers take offline rows by index from the offline run's sampler; another sampler
    # (another copy of the data) only where the fine-tuned algorithm reads other batch fields
    # (Balanced Replay's ensemble of CQL runs reads the same ones).
    if algo.sampler_options() != first.sampler_options():
        offline = TensorSampler(
            prepared,
            algo.config.batch_size,
            seed=cfg.seed,
            device=cfg.device,
            **algo.sampler_options(),
        )

    def make_sampler(buffer: ReplayBuffer) -> MixedSampler | BalancedSampler:
        online = OnlineRows(buffer, algo.normalizer(), reward_a, reward_b, cfg.num_envs)
        size, seed = algo.config.batch_size, cfg.seed + 2
        if mix == "balanced":
            temperature, lr = cfg.balance_temperature, cfg.density_lr
            return BalancedSampler(offline, online, size, seed, temperature, lr)
        return MixedSampler(
            offline,
            online,
            mix,
            size,
            seed,
            cfg.offline_ratio,
            cfg.final_offline_ratio,
            schedule_steps,
        )

    def on_episode_end(buffer: ReplayBuffer, rows: np.ndarray) -> None:
        # Returns-to-go in the training reward's units (Cal-QL's floor), truncations not
        # bootstrapped, as for the offline data.
        rewards = buffer.rewards[rows].astype(np.float64) * reward_a + reward_b
        out, acc = np.empty(len(rows)), 0.0
        for k in range(len(rows) - 1, -1, -1):
            acc = rewards[k] + gamma * acc
            out[k] = acc
        buffer.set_returns(rows, out.astype(np.float32))

    online_cfg = dataclasses.replace(cfg, env_id=env_id)
    plan = OnlinePlan(
        make_sampler=make_sampler,
        on_episode_end=on_episode_end,
        config={"finetune": {"init": init, "mix": mix, "offline_train": train_cfg}},
        schedule_steps=schedule_steps,
        summary=lambda returns, records: finetune_summary(
            returns, records, env_id, cfg.drop_window
        ),
    )
    final = run_online(online_cfg, algo, resume, allow_changes, plan, SAFE_FINETUNE_CHANGES)
    plot_finetune_curve(run, [Path(p) for p in init] if not cfg.init else [], run / "curve.png")
    return final


def finetune_summary(
    returns: list[float], records: list[dict[str, Any]], env_id: str, drop_window: int
) -> dict[str, Any]:
    """``final.json``'s fine-tuning metrics (see the module docstring) from every online
    training episode's return and the run's metric records."""
    evals = [r for r in records if r["kind"] == "eval"]
    norm_known = bool(evals) and evals[0].get("eval/normalized_score") is not None
    key = "eval/normalized_score" if norm_known else "eval/return_mean"
    by_step = {int(r["step"]): float(r[key]) for r in evals}
    start = by_step.get(0)
    early = [v for s, v in by_step.items() if 0 < s <= drop_window] or [
        by_step[s] for s in sorted(by_step)[1:2]
    ]
    worst = min(early) if early else None
    norm = [normalized_score(env_id, r) for r in returns]
    regret = (
        float(np.mean([1.0 - n / 100.0 for n in norm if n is not None]))
        if norm and all(n is not None for n in norm)
        else None
    )
    last = by_step[max(by_step)] if by_step else None
    return {
        "score_kind": "normalized" if key == "eval/normalized_score" else "return",
        "offline_score": start,
        "online_score": last,
        "worst_early_score": worst,
        "initial_drop": None if start is None or worst is None else start - worst,
        "regret": regret,
        "online_episodes": len(returns),
        "online_episode_returns": [float(r) for r in returns],
    }


def plot_finetune_curve(run: Path, offline_runs: list[Path], out: Path) -> Path:
    """The offline phase's evaluations (at ``step - offline_steps``, when it was trained in
    this run) and the online phase's, on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    online = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    norm = bool(online) and online[0].get("eval/normalized_score") is not None
    key = "eval/normalized_score" if norm else "eval/return_mean"
    for i, off in enumerate(offline_runs):
        recs = [r for r in read_metrics(off / "metrics.jsonl") if r["kind"] == "eval"]
        if recs:
            end = max(r["step"] for r in recs)
            label = "offline" if i == 0 else None
            ax.plot([r["step"] - end for r in recs], [r[key] for r in recs], "C0o-", label=label)
    ax.plot([r["step"] for r in online], [r[key] for r in online], "C1o-", label="online")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("offline gradient steps (< 0), then online environment steps")
    ax.set_ylabel("normalised score" if norm else "return")
    ax.set_title(run.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
