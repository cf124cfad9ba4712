"""offrl's MinAtar datasets: an online QR-DQN run's network kept as an expert file, rolled out
with epsilon-greedy noise into ``minatar-<game>-noisy-v0`` (built on first use, cached)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrl.cli import main
from offrl.data import DatasetError
from offrl.train.checkpoint import load_algorithm
from offrl.train.online import OnlineConfig, train_online

pytest.importorskip("minatar")


def test_expert_file_rolls_out_into_the_registered_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offrl.suite.minatar import load_expert, make_minatar

    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "data"))
    run = tmp_path / "expert"
    train_online(
        OnlineConfig(
            algo="qrdqn", env_id="offrl/MinAtar-Breakout-v1", out=str(run), steps=300,
            start_steps=100, eval_every=0, eval_episodes=1, snapshot_every=0, progress=False,
            threads=1, algo_config={"num_quantiles": 8},
        )
    )  # fmt: skip
    expert_path = tmp_path / "breakout.pt"
    assert main(["dataset", "expert", str(run), "--out", str(expert_path)]) == 0
    assert expert_path.stat().st_size < 2_000_000  # the network alone
    trained = load_algorithm(run / "checkpoints" / "latest.pt")
    expert = load_expert(expert_path)
    obs = (np.random.default_rng(0).random((20, 4, 10, 10)) < 0.1).astype(np.uint8) * 255
    np.testing.assert_array_equal(expert.act(obs), trained.act(obs))

    name = "minatar-breakout-noisy-v0"
    data = make_minatar(name, transitions=400, expert=expert_path)
    assert len(data) == 400 and data.observations.dtype == np.uint8
    assert data.env_id == "offrl/MinAtar-Breakout-v1" and data.metadata["behaviour_eps"] == 0.2
    assert (tmp_path / "data" / "datasets" / f"{name}.npz").exists()
    assert make_minatar(name).fingerprint() == data.fingerprint()  # cached, not rebuilt


def test_a_game_without_a_shipped_expert_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import offrl.suite.minatar as minatar
    from offrl.suite.minatar import make_minatar

    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(minatar, "PACK_DIR", tmp_path / "no-experts")  # as before any ships
    with pytest.raises(DatasetError, match="^dataset: the QR-DQN expert for MinAtar Seaquest"):
        make_minatar("minatar-seaquest-noisy-v0")
