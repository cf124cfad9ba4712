"""QR-DQN online on the loop SAC uses: it learns CartPole on a small budget, a killed run
resumes to the same weights, and on MinAtar the replay keeps frames as bytes and exports a
discrete dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.train.checkpoint import load_checkpoint
from offrl.train.online import OnlineConfig, env_spec, train_online

FAST = {
    "hidden": (64, 64),
    "num_quantiles": 32,
    "lr": 1e-3,
    "target_update_every": 200,
    "eps_decay_updates": 3000,
    "eps_end": 0.05,
    "batch_size": 64,
}


def _config(tmp_path: Path, name: str, **over: Any) -> OnlineConfig:
    options: dict[str, Any] = dict(
        algo="qrdqn",
        env_id="CartPole-v1",
        out=str(tmp_path / name),
        start_steps=500,
        buffer_size=10_000,
        eval_every=0,
        eval_episodes=10,
        snapshot_every=0,
        checkpoint_every=100_000,
        progress=False,
        threads=1,
        algo_config=FAST,
    )
    return OnlineConfig(**{**options, **over})


def test_env_spec_of_discrete_environments() -> None:
    spec = env_spec("CartPole-v1")
    assert spec.discrete and spec.action_dim == 2 and spec.obs_shape == (4,)


def test_qrdqn_learns_cartpole_on_a_small_budget(tmp_path: Path) -> None:
    """Observed after 6000 steps: 220, 180 and 198 over 10 episodes for seeds 0-2 (the random
    policy: about 22); here 4000 steps, seed 0."""
    final = train_online(_config(tmp_path, "qr", steps=4000))
    assert final["return_mean"] > 100, final


def test_killed_qrdqn_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """600 steps, then a resume to 1000, equals 1000 steps in one go (CartPole's simulator
    state is checkpointed, so even the episode in flight continues)."""
    short = dict(steps=1000, checkpoint_every=300, eval_episodes=1)
    train_online(_config(tmp_path, "whole", **short))
    train_online(_config(tmp_path, "cut", **{**short, "steps": 600}))
    train_online(_config(tmp_path, "cut", **short), resume=True, allow_changes=["steps"])
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "latest.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert whole["algo"]["num_updates"] == cut["algo"]["num_updates"] == 1000 - 499
    for key, value in whole["algo"]["q"].items():
        assert torch.equal(value, cut["algo"]["q"][key]), key
    np.testing.assert_array_equal(whole["buffer"]["actions"], cut["buffer"]["actions"])


def test_minatar_replay_keeps_bytes_and_exports_a_discrete_dataset(tmp_path: Path) -> None:
    pytest.importorskip("minatar")
    from offrl.data import Dataset

    cfg = _config(
        tmp_path,
        "minatar",
        env_id="offrl/MinAtar-Breakout-v1",
        steps=300,
        start_steps=100,
        checkpoint_every=300,
        eval_episodes=1,
        algo_config={**FAST, "num_quantiles": 8},
    )
    train_online(cfg)
    state = load_checkpoint(tmp_path / "minatar" / "checkpoints" / "latest.pt")
    assert state["buffer"]["obs"].dtype == torch.uint8
    assert state["buffer"]["obs"].shape == (300, 4, 10, 10)
    assert state["buffer"]["actions"].dtype == torch.int64
    from offrl.data.replay import ReplayBuffer

    spec = env_spec(cfg.env_id)
    buf = ReplayBuffer(
        300, spec.obs_shape, spec.action_dim, np.zeros(1), np.ones(1), True, np.uint8
    )
    buf.load_state_dict(state["buffer"])
    data = buf.to_dataset(env_id=cfg.env_id)
    assert isinstance(data, Dataset) and data.discrete and data.observations.dtype == np.uint8
    assert len(data) == 300 and set(np.unique(data.actions)) <= {0, 1, 2}
