"""Training the dynamics ensemble once per dataset, and keeping it as an artifact.

:func:`fit_dynamics` follows OfflineRL-Kit's ``EnsembleDynamics.train`` (itself MBPO's and MOPO's
recipe): a random held-out split of ``min(model_holdout * N, model_max_holdout)`` transitions;
every member trains on its own bootstrap resample of the rest (drawn with replacement), all
members stepping together on batches of ``model_batch_size`` with Adam; after every epoch each
member's held-out error of its mean prediction is measured, and a member whose error improved by
more than 1 % (relative) keeps a copy of its weights. Training stops when no member has improved
for ``model_patience`` epochs (or at ``model_max_epochs``); each member is then restored to its
best weights and the ``model_elites`` members with the lowest held-out error become the elites.

The model is the expensive part of a model-based run and does not depend on the algorithm or its
seed, so :func:`fit_or_load` keeps it: the artifact is a ``torch.save`` of tensors and plain
values (loaded with ``weights_only=True``, no code runs), named by the fingerprint of the data it
was trained on and the hash of its options, under ``data_dir()/models/``. A second run -- another
algorithm, another seed -- on the same data loads it instead of training again.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl.config import check_options
from offrl.data.dataset import Dataset
from offrl.data.registry import data_dir
from offrl.dynamics.model import DynamicsEnsemble
from offrl.dynamics.termination import termination_fn
from offrl.errors import CheckpointError, ConfigError
from offrl.io import atomic_write_bytes
from offrl.optim import FlatAdam

__all__ = [
    "DynamicsConfig",
    "FittedModel",
    "fit_dynamics",
    "improved_members",
    "select_elites",
    "training_arrays",
    "fit_or_load",
    "load_model",
    "save_model",
    "model_path",
]

ARTIFACT_FORMAT = 1


@dataclass
class DynamicsConfig:
    """Options of the dynamics ensemble and its training (OfflineRL-Kit's ``run_mopo.py`` /
    ``EnsembleDynamics.train`` defaults). A mix-in of the model-based algorithms' configs; the
    ``model_`` prefix keeps them apart from the policy's options."""

    model_ensemble: int = 7
    """Members of the ensemble (Kit ``--n-ensemble``)."""
    model_elites: int = 5
    """Members kept for rollouts, the lowest held-out error (Kit ``--n-elites``)."""
    model_hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden widths of every member (Swish activations)."""
    model_lr: float = 1e-3
    """Adam learning rate."""
    model_batch_size: int = 256
    """Transitions per member per step."""
    model_holdout: float = 0.2
    """Fraction of the data held out to choose weights and elites..."""
    model_max_holdout: int = 1000
    """...but at most this many transitions (Kit)."""
    model_patience: int = 5
    """Stop after this many epochs in which no member improved by more than 1 %."""
    model_max_epochs: int | None = None
    """Stop after this many epochs anyway (``None``: only ``model_patience``, as Kit's MOPO and
    COMBO scripts; its MOBILE script uses 30)."""
    model_epoch_steps: int | None = None
    """Gradient steps per epoch (``None``: one pass over the training split, as Kit). On a
    large dataset a fixed number makes epochs -- and the held-out checks -- more frequent."""
    model_logvar_coef: float = 0.01
    """Weight of the learned log-variance bounds' tightening term."""
    model_seed: int = 0
    """Seed of the split, the bootstrap, the initial weights and the batches: the model is a
    function of the data and these options, not of the algorithm's seed, so every run on the
    same data shares it."""

    def __post_init__(self) -> None:
        check_options(self)

    def model_options(self) -> dict[str, Any]:
        """This config's ``model_*`` fields (what the artifact's name hashes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DynamicsConfig)}

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> DynamicsConfig:
        """From plain values (lists become tuples); an unknown option is a
        :class:`~offrl.errors.ConfigError` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**kwargs)

    def ensemble(self, obs_dim: int, act_dim: int) -> DynamicsEnsemble:
        """A fresh :class:`DynamicsEnsemble` of these options (weights from torch's RNG)."""
        return DynamicsEnsemble(
            obs_dim, act_dim, self.model_hidden, self.model_ensemble, self.model_elites
        )

    @classmethod
    def of(cls, config: Any) -> DynamicsConfig:
        """The :class:`DynamicsConfig` part of any config that mixes it in."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclass
class FittedModel:
    """A trained ensemble and what its training measured."""

    model: DynamicsEnsemble
    holdout_mse: list[float]
    """Each member's best held-out mean squared error (of ``(s' - s, r)``)."""
    baseline_mse: float
    """The held-out error of predicting "no change and zero reward": what the model beats."""
    calibration: dict[str, float]
    """How well the elites' predicted variances fit their held-out errors: the fractions of
    held-out targets within one and two predicted standard deviations of the mean
    (``within_1std``, ``within_2std``; a calibrated Gaussian gives 0.683 and 0.954) and the mean
    Gaussian negative log-likelihood per target (``holdout_nll``, constant included)."""
    epochs: int
    seconds: float
    train_size: int
    holdout_size: int
    history: list[dict[str, float]]
    """Per epoch: ``epoch``, ``train_loss`` (mean), ``holdout_mse`` of the elites so far."""
    env_id: str | None = None
    path: Path | None = None
    reused: bool = False

    def summary(self) -> dict[str, Any]:
        """Plain values for ``offrl model info`` and ``final.json``."""
        elites = self.model.elite_idx.tolist()
        return {
            "members": self.model.ensemble,
            "elites": elites,
            "holdout_mse": self.holdout_mse,
            "elite_holdout_mse": float(np.mean([self.holdout_mse[i] for i in elites])),
            "baseline_mse": self.baseline_mse,
            "calibration": self.calibration,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "train_size": self.train_size,
            "holdout_size": self.holdout_size,
            "termination": "rule" if termination_fn(self.env_id) else "learned",
            "path": None if self.path is None else str(self.path),
            "reused": self.reused,
        }


def training_arrays(
    data: Dataset,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(obs, actions, targets, dones)`` as the model trains on them: the flattened
    observations and actions, the targets ``(s' - s, r)`` and the terminals as floats."""
    obs = torch.from_numpy(np.asarray(data.observations, np.float32).reshape(len(data), -1))
    nxt = torch.from_numpy(np.asarray(data.next_observations, np.float32).reshape(len(data), -1))
    act = torch.from_numpy(np.asarray(data.actions, np.float32).reshape(len(data), -1))
    targets = torch.cat([nxt - obs, torch.from_numpy(data.rewards.astype(np.float32))[:, None]], 1)
    dones = torch.from_numpy(data.terminals.astype(np.float32))
    return obs, act, targets, dones


def improved_members(best: list[float], errors: list[float], threshold: float = 0.01) -> list[int]:
    """The members whose held-out error improved on their best by more than ``threshold``
    (relative): Kit's ``(old - new) / old > 0.01``."""
    return [i for i, (b, e) in enumerate(zip(best, errors, strict=True)) if (b - e) / b > threshold]


def select_elites(errors: list[float], k: int) -> list[int]:
    """The ``k`` members with the lowest held-out error, best first (ties: the lower index)."""
    return sorted(range(len(errors)), key=lambda i: (errors[i], i))[:k]


@torch.no_grad()
def calibration(
    model: DynamicsEnsemble, obs: torch.Tensor, act: torch.Tensor, targets: torch.Tensor
) -> dict[str, float]:
    """The elites' calibration on held-out data (see :attr:`FittedModel.calibration`)."""
    mean, log_var, _ = model(obs, act)
    mean, log_var = mean[model.elite_idx], log_var[model.elite_idx]
    z = (targets - mean).abs() * torch.exp(-0.5 * log_var)
    nll = 0.5 * ((targets - mean).pow(2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi))
    return {
        "within_1std": float((z < 1.0).float().mean()),
        "within_2std": float((z < 2.0).float().mean()),
        "holdout_nll": float(nll.mean()),
    }


def fit_dynamics(
    data: Dataset,
    config: DynamicsConfig | None = None,
    progress: Callable[[str], None] | None = None,
    checkpoint: Path | None = None,
) -> FittedModel:
    """Train a :class:`DynamicsEnsemble` on ``data`` (see the module docstring).

    ``data``'s observations must be vectors and its actions continuous; the model predicts in
    ``data``'s own units. Termination is learned too (rollouts use it where
    :func:`termination_fn` knows no rule for the environment).

    With ``checkpoint``, the fit's state is written there (atomically) after every epoch, and a
    fit that finds one continues from it: a killed fit resumes to the same model as one never
    interrupted. The caller removes the file once the model is saved.
    """
    cfg = config or DynamicsConfig()
    if data.discrete or len(data.obs_shape) != 1:
        raise ValueError("the dynamics model takes vector observations and continuous actions")
    start = time.perf_counter()
    obs, act, targets, dones = training_arrays(data)
    n = obs.shape[0]
    gen = torch.Generator().manual_seed(cfg.model_seed)
    holdout = min(int(n * cfg.model_holdout), cfg.model_max_holdout)
    if holdout < 1 or n - holdout < 1:
        raise ValueError(f"data: {n} transitions are too few to hold out a validation split")
    perm = torch.randperm(n, generator=gen)
    val, train = perm[:holdout], perm[holdout:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.model_seed)
        model = cfg.ensemble(obs.shape[1], act.shape[1])
    model.set_scaler(torch.cat([obs[train], act[train]], 1))
    optim = FlatAdam(list(model.parameters()), lr=cfg.model_lr)
    e, m = cfg.model_ensemble, len(train)
    boot = train[torch.randint(0, m, (e, m), generator=gen)]  # [E, M] bootstrap rows
    steps = cfg.model_epoch_steps or math.ceil(m / cfg.model_batch_size)
    best = [1e10] * e  # Kit's starting value (a relative improvement of inf is nan)
    saved = copy.deepcopy(model)  # each member's best weights so far
    baseline = float(targets[val].pow(2).mean())
    history: list[dict[str, float]] = []
    epoch = since = 0
    cursor = m  # position in the current shuffle of each member's rows
    order = boot
    shuffled_from = gen.get_state()  # the generator before the current shuffle

    def shuffle() -> torch.Tensor:  # a new order of each member's bootstrap rows, [E, M]
        return boot.gather(1, torch.argsort(torch.rand(e, m, generator=gen), dim=1))

    state = _read_fit_state(checkpoint, progress) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        saved.load_state_dict(state["saved"])
        optim.load_state_dict(state["optim"])
        best, history = list(state["best"]), list(state["history"])
        epoch, since, cursor = int(state["epoch"]), int(state["since"]), int(state["cursor"])
        # The generator is used only to shuffle: redo the current shuffle from its saved state.
        shuffled_from = state["shuffled_from"]
        gen.set_state(shuffled_from)
        order = shuffle()
        if progress is not None:
            progress(f"dynamics model: resuming after epoch {epoch} from {checkpoint}")

    def finished() -> bool:  # early stopping, or the epoch budget spent
        budget = cfg.model_max_epochs
        return epoch > 0 and (since >= cfg.model_patience or bool(budget and epoch >= budget))

    while not finished():
        epoch += 1
        total = 0.0
        for _ in range(steps):
            if cursor + cfg.model_batch_size > m:  # reshuffle each member's bootstrap rows
                shuffled_from = gen.get_state()
                order = shuffle()
                cursor = 0
            idx = order[:, cursor : cursor + cfg.model_batch_size]  # [E, b]
            cursor += cfg.model_batch_size
            loss, _ = model.loss(
                obs[idx], act[idx], targets[idx], dones[idx],
                cfg.model_logvar_coef,
            )  # fmt: skip
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.detach())
        errors = model.mean_error(obs[val], act[val], targets[val]).tolist()
        improved = improved_members(best, errors)
        if improved:
            saved.copy_members(model, improved)
            for i in improved:
                best[i] = errors[i]
            since = 0
        else:
            since += 1
        elites = select_elites(best, cfg.model_elites)
        history.append(
            {
                "epoch": float(epoch),
                "train_loss": total / steps,
                "holdout_mse": float(np.mean([best[i] for i in elites])),
            }
        )
        if checkpoint is not None:
            fit_state = {
                "model": model.state_dict(), "saved": saved.state_dict(),
                "optim": optim.state_dict(), "best": best, "history": history, "epoch": epoch,
                "since": since, "cursor": cursor, "shuffled_from": shuffled_from,
            }  # fmt: skip
            _save_state(checkpoint, fit_state)
        if progress is not None:
            progress(
                f"dynamics model: epoch {epoch}, held-out MSE of the elites "
                f"{history[-1]['holdout_mse']:.4g} (no change: {baseline:.4g})"
            )
    model = saved
    model.set_elites(select_elites(best, cfg.model_elites))
    return FittedModel(
        model=model,
        holdout_mse=best,
        baseline_mse=baseline,
        calibration=calibration(model, obs[val], act[val], targets[val]),
        epochs=epoch,
        seconds=time.perf_counter() - start,
        train_size=m,
        holdout_size=holdout,
        history=history,
        env_id=data.env_id,
    )


def _read_fit_state(path: Path, progress: Callable[[str], None] | None) -> dict[str, Any] | None:
    """A fit's per-epoch state, or ``None`` where there is none or it cannot be read (the fit
    then starts over)."""
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: start over rather than fail
        if progress is not None:
            progress(f"dynamics model: ignoring unreadable {path} ({exc})")
        return None
    return state


# ---------------------------------------------------------------------- the artifact
def model_path(data: Dataset, config: DynamicsConfig, root: Path | None = None) -> Path:
    """Where the model of ``data`` under ``config`` is kept: ``<root or data_dir()/models>/
    <fingerprint of data>-<hash of the model options>.pt``."""
    options = json.dumps(config.model_options(), sort_keys=True, default=list)
    digest = hashlib.sha256(options.encode()).hexdigest()[:12]
    return (root or data_dir() / "models") / f"{data.fingerprint()}-{digest}.pt"


def save_model(fitted: FittedModel, path: Path, data: Dataset, config: DynamicsConfig) -> None:
    """Write the artifact atomically (tensors and plain values only)."""
    state = {
        "format": ARTIFACT_FORMAT,
        "kind": "offrl-dynamics",
        "config": json.loads(json.dumps(config.model_options(), default=list)),
        "obs_dim": fitted.model.obs_dim,
        "act_dim": fitted.model.act_dim,
        "weights": fitted.model.state_dict(),
        "holdout_mse": fitted.holdout_mse,
        "baseline_mse": fitted.baseline_mse,
        "calibration": fitted.calibration,
        "epochs": fitted.epochs,
        "seconds": fitted.seconds,
        "train_size": fitted.train_size,
        "holdout_size": fitted.holdout_size,
        "history": fitted.history,
        "dataset_fingerprint": data.fingerprint(),
        "env_id": data.env_id,
    }
    _save_state(path, state)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain values only) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: Path) -> FittedModel:
    """Read an artifact (``weights_only``: no code runs); :class:`CheckpointError` names the
    file if it is not an intact offrl dynamics model."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("kind") != "offrl-dynamics":
            raise ValueError("not an offrl dynamics model")
        cfg = DynamicsConfig.from_options(state["config"])
        model = cfg.ensemble(int(state["obs_dim"]), int(state["act_dim"]))
        model.load_state_dict(state["weights"])
        return FittedModel(
            model=model,
            holdout_mse=[float(x) for x in state["holdout_mse"]],
            baseline_mse=float(state["baseline_mse"]),
            calibration={k: float(v) for k, v in state["calibration"].items()},
            epochs=int(state["epochs"]),
            seconds=float(state["seconds"]),
            train_size=int(state["train_size"]),
            holdout_size=int(state["holdout_size"]),
            history=list(state["history"]),
            env_id=state.get("env_id"),
            path=path,
            reused=True,
        )
    except Exception as exc:  # damaged, foreign, or missing entries
        raise CheckpointError(f"{path}: not a readable offrl dynamics model ({exc})") from exc


def fit_or_load(
    data: Dataset,
    config: DynamicsConfig | None = None,
    progress: Callable[[str], None] | None = None,
    root: Path | None = None,
) -> FittedModel:
    """The model of ``data`` under ``config``: loaded from its artifact if one exists (and is
    intact), else trained by :func:`fit_dynamics` and saved there."""
    cfg = config or DynamicsConfig()
    path = model_path(data, cfg, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One trainer per artifact: runs started together on the same data (a grid's workers)
    # wait for the first to finish training, then load its model.
    with _locked(path.with_name(path.name + ".lock")):
        return _fit_or_load(data, cfg, path, progress)


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock`` (``fcntl``; where it does not exist, no lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: runs may train the same model twice, harmlessly
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fit_or_load(
    data: Dataset, cfg: DynamicsConfig, path: Path, progress: Callable[[str], None] | None
) -> FittedModel:
    if path.exists():
        try:
            fitted = load_model(path)
            if progress is not None:
                progress(f"dynamics model: reusing {path}")
            return fitted
        except CheckpointError as exc:
            if progress is not None:
                progress(f"dynamics model: {exc}; training it again")
    if progress is not None:
        progress(f"dynamics model: training on {len(data)} transitions (once; kept in {path})")
    partial = path.with_name(path.name + ".partial")
    fitted = fit_dynamics(data, cfg, progress, checkpoint=partial)
    save_model(fitted, path, data, cfg)
    partial.unlink(missing_ok=True)
    fitted.path = path
    return fitted
