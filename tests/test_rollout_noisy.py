"""``offrl dataset rollout``: a trained policy with epsilon-greedy noise becomes a dataset (the
second seed's noisy QR-DQN buffers), frames kept as bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrl.algos import EnvSpec, get_algorithm
from offrl.cli import main
from offrl.data import load_dataset
from offrl.train.checkpoint import save_checkpoint

pytest.importorskip("minatar")
ENV = "offrl/MinAtar-Breakout-v1"


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_rollout_of_a_checkpoint_with_epsilon_noise(tmp_path: Path, eps: float) -> None:
    cls = get_algorithm("qrdqn")
    algo = cls(EnvSpec((4, 10, 10), 3, discrete=True), cls.config_class(num_quantiles=4), seed=0)
    ckpt = tmp_path / "latest.pt"
    save_checkpoint(ckpt, {"algo": algo.state_dict(), "env_id": ENV})
    out = tmp_path / "noisy.npz"
    cmd = ["dataset", "rollout", str(ckpt), "--out", str(out), "--eps", str(eps)]
    assert main([*cmd, "--transitions", "1500", "--num-envs", "3", "--seed", "1"]) == 0
    data = load_dataset(out)
    assert len(data) == 1500 and data.env_id == ENV
    assert data.observations.dtype == np.uint8 and data.observations.shape[1:] == (4, 10, 10)
    assert data.actions.dtype == np.int64
    assert data.metadata["behaviour_eps"] == eps and data.metadata["behaviour_algo"] == "qrdqn"
    assert np.isfinite(data.metadata["behaviour_return_mean"])
    # A random action differs from the greedy one 2/3 of the time: eps * 2/3 of the rows.
    differs = float((algo.act(data.observations) != data.actions).mean())
    assert differs == pytest.approx(eps * 2 / 3, abs=0.04)
