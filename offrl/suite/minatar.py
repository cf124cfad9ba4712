"""offrl's discrete datasets: the second seed's recipe on MinAtar, made on the user's machine.

The second seed trains a QR-DQN expert on each Atari game and rolls it out with epsilon-greedy
noise (``eps = 0.2``) into a 1M-transition buffer. offrl does the same on five MinAtar games
(Young & Tian, 2019), which a CPU can train: ``benchmarks/minatar/experts.sh`` trains the
experts with ``offrl online --algo qrdqn``, :func:`export_expert` keeps each one's Q-network
(an *expert file*, loadable without executing code), and the files that ship in
``offrl/data/behaviour/`` give the names

    minatar-<game>-noisy-v0      (breakout, spaceinvaders, asterix, freeway, seaquest)

built on first use by :func:`make_minatar` -- 1M transitions of the expert at ``eps = 0.2``,
seeded, cached under :func:`offrl.data.registry.data_dir` -- offrl's datasets, not Tianshou's
or RL Unplugged's. ``--data-fraction 0.1`` / ``0.01`` (or ``offrl dataset subsample``) are the
seed's reduced-buffer ablations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from offrl.algos import Algorithm, EnvSpec, get_algorithm
from offrl.data.dataset import Dataset, DatasetError
from offrl.data.loaders import load_npz, save_npz
from offrl.data.registry import data_dir, report_progress
from offrl.suite.factory import PACK_DIR
from offrl.suite.rollout import noisy_rollout
from offrl.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "MINATAR_GAMES",
    "MINATAR_DATASETS",
    "export_expert",
    "load_expert",
    "make_minatar",
]

MINATAR_GAMES = ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest")
"""The five MinAtar games."""

MINATAR_DATASETS: dict[str, str] = {f"minatar-{g.lower()}-noisy-v0": g for g in MINATAR_GAMES}
"""Registered name -> game."""

EPS = 0.2
"""The behaviour's random-action probability (the second seed's ``--eps-test 0.2``)."""
TRANSITIONS = 1_000_000
"""Transitions per dataset (the second seed's ``--buffer-size 1000000``)."""


def expert_file(game: str) -> Path:
    """Where the shipped expert of ``game`` lives."""
    return PACK_DIR / f"minatar-{game.lower()}-qrdqn.pt"


def export_expert(run: str | Path, out: str | Path) -> Path:
    """Keep an online run's policy network (``RUN/checkpoints/latest.pt``: a QR-DQN expert)
    with what rebuilds it and its last evaluation: a file of a few hundred KB, written
    atomically, loaded by :func:`load_expert` without executing code."""
    run = Path(run)
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    algo = state["algo"]
    final_path = run / "final.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else {}
    expert = {
        "format": "offrl-expert-1",
        "algo": algo["algo"],
        "config": algo["config"],
        "spec": algo["spec"],
        "q": algo["q"],
        "env_id": state.get("env_id"),
        "steps": int(state.get("step", 0)),
        "return_mean": final.get("return_mean"),
        "return_std": final.get("return_std"),
    }
    out = Path(out)
    save_checkpoint(out, expert)
    return out


def load_expert(path: str | Path) -> Algorithm:
    """The algorithm of an expert file, its Q-network restored: ``act`` is the greedy
    expert."""
    state: dict[str, Any] = load_checkpoint(path)
    if state.get("format") != "offrl-expert-1":
        raise DatasetError(f"format: {path} is not an offrl expert file")
    cls = get_algorithm(str(state["algo"]))
    algo = cls(EnvSpec.from_dict(state["spec"]), cls.config_class.from_dict(state["config"]))
    algo.q.load_state_dict(state["q"])  # type: ignore[attr-defined]
    return algo


def make_minatar(
    name: str,
    rebuild: bool = False,
    transitions: int = TRANSITIONS,
    seed: int = 0,
    expert: str | Path | None = None,
) -> Dataset:
    """Load ``minatar-<game>-noisy-v0``, building it on first use from the shipped expert (or
    ``expert``, an expert file) and caching it as offrl ``.npz`` under :func:`data_dir`."""
    if name not in MINATAR_DATASETS:
        raise KeyError(f"unknown MinAtar dataset {name!r}; available: {sorted(MINATAR_DATASETS)}")
    game = MINATAR_DATASETS[name]
    path = data_dir() / "datasets" / f"{name}.npz"
    if path.exists() and not rebuild:
        return load_npz(path)
    source = Path(expert) if expert is not None else expert_file(game)
    if not source.exists():
        raise DatasetError(
            f"dataset: the QR-DQN expert for MinAtar {game} ({source.name}) is not shipped with "
            "this version of offrl; train one with benchmarks/minatar/experts.sh and build with "
            "`offrl dataset rollout`"
        )
    report_progress(f"building {name} from {source.name} (first use; cached in {path})")
    policy = load_expert(source)
    env_id = f"offrl/MinAtar-{game}-v1"
    meta: dict[str, object] = {
        "name": name,
        "source": "offrl built-in (not D4RL)",
        "behaviour": source.name,
    }
    ds = noisy_rollout(policy, env_id, transitions, EPS, seed, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(ds, path)
    return ds
