"""Atari at smoke level (this CPU cannot train it): the DQN-preprocessed environment, a noisy
rollout of a QR-DQN policy into a dataset of stacked 84 x 84 frames, discrete CQL on the Nature
CNN over it, and the trained policy evaluated in the game."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrl.algos import EnvSpec, get_algorithm
from offrl.cli import main
from offrl.data import load_dataset
from offrl.train import TrainConfig, train
from offrl.train.checkpoint import save_checkpoint

pytest.importorskip("ale_py")
ENV = "offrl/Atari-Pong-v0"


def test_atari_pipeline_at_smoke_level(tmp_path: Path) -> None:
    cls = get_algorithm("qrdqn")
    expert = cls(EnvSpec((4, 84, 84), 6, discrete=True), cls.config_class(num_quantiles=4))
    ckpt = tmp_path / "expert.pt"
    save_checkpoint(ckpt, {"algo": expert.state_dict(), "env_id": ENV})
    data_path = tmp_path / "pong.npz"
    cmd = ["dataset", "rollout", str(ckpt), "--out", str(data_path), "--eps", "0.2"]
    assert main([*cmd, "--transitions", "300", "--num-envs", "2"]) == 0
    data = load_dataset(data_path)
    assert data.observations.shape == (300, 4, 84, 84) and data.observations.dtype == np.uint8
    final = train(
        TrainConfig(
            algo="discrete_cql", dataset=str(data_path), steps=4, eval_every=0,
            eval_episodes=1, final_eval_episodes=0, out=str(tmp_path / "cql"), progress=False,
            threads=1, algo_config={"num_quantiles": 8},
        )
    )  # fmt: skip
    assert final["status"] == "completed"
    assert -21 <= final["return_mean"] <= 21  # one game of Pong, scored
