"""Frame storage: one frame per step, stacks built at sampling time, next observations derived
from the next frame; the indexing at episode boundaries by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from offrl.data import DatasetError
from offrl.data.frames import FrameDataset, FrameSampler

H = W = 2


def _frames(n: int) -> np.ndarray:
    """Frame ``t`` is filled with the value ``t + 1`` (0 never occurs), so stacks read as ids."""
    return np.repeat(np.arange(1, n + 1, dtype=np.uint8), H * W).reshape(n, H, W)


def _ids(stacks: np.ndarray) -> list[list[int]]:
    """Each stack as the step ids of its frames."""
    return [[int(f[0, 0]) - 1 for f in s] for s in stacks]


def _three_episodes() -> FrameDataset:
    """A: steps 0-2, terminal at 2. B: steps 3-5, timeout at 5. C: steps 6-7, the data's end."""
    terminals = np.zeros(8, bool)
    timeouts = np.zeros(8, bool)
    terminals[2], timeouts[5] = True, True
    return FrameDataset.from_steps(
        _frames(8), np.arange(8) % 3, np.arange(8, dtype=np.float32), terminals, timeouts, 3
    )


def test_stacks_and_next_stacks_at_episode_boundaries_by_hand() -> None:
    data = _three_episodes()
    # B's and C's last steps have no logged successor: dropped (D4RL's rule); steps 4 and 6
    # end their episodes as truncations.
    assert len(data) == 6 and data.metadata["dropped_steps"] == 2
    np.testing.assert_array_equal(data.rewards, [0, 1, 2, 3, 4, 6])
    np.testing.assert_array_equal(data.terminals, [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(data.timeouts, [0, 0, 0, 0, 1, 1])
    assert _ids(data.stacked(range(6))) == [
        [0, 0, 0],  # an episode's first stack repeats its first frame
        [0, 0, 1],
        [0, 1, 2],
        [3, 3, 3],  # never a frame of the previous episode
        [3, 3, 4],
        [6, 6, 6],
    ]
    assert _ids(data.stacked(range(6), next_obs=True)) == [
        [0, 0, 1],
        [0, 1, 2],
        [1, 2, 2],  # a terminal's successor: a copy, never bootstrapped
        [3, 3, 4],
        [3, 4, 5],  # the dropped step's frame is the truncation's real successor
        [6, 6, 7],
    ]
    # Stored once: A 2 pads + 3 frames + 1 successor, B 2 + 3, C 2 + 2.
    assert data.frames.shape == (15, H, W) and data.obs_shape == (3, H, W)
    assert data.stats().num_episodes == 3


def test_a_long_buffer_stores_about_one_frame_per_step() -> None:
    """What makes a 1M-step Atari buffer 7 GB rather than 56: 200 episodes of 500 steps with
    4-frame stacks take 1.008 frames per step (3 pads an episode), not 2 x 4."""
    n, ep = 100_000, 500
    terminals = np.arange(n) % ep == ep - 1
    data = FrameDataset.from_steps(
        np.zeros((n, 84, 84), np.uint8), np.zeros(n, np.int64), np.zeros(n), terminals,
        np.zeros(n, bool), 4,
    )  # fmt: skip
    assert len(data) == n
    assert data.frames.nbytes / (n * 84 * 84) == pytest.approx(1 + 4 / ep)


def test_sampler_gathers_the_same_stacks() -> None:
    data = _three_episodes()
    sampler = FrameSampler(data, batch_size=64, seed=0, returns_gamma=0.5)
    batch = sampler.sample()
    rows = batch.rows.numpy()
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (64, 3, H, W)
    np.testing.assert_array_equal(batch.obs.numpy(), data.stacked(rows))
    np.testing.assert_array_equal(batch.next_obs.numpy(), data.stacked(rows, next_obs=True))
    np.testing.assert_array_equal(batch.actions.numpy(), data.actions[rows])
    np.testing.assert_array_equal(batch.dones.numpy(), data.terminals[rows])
    assert batch.returns_to_go is not None
    np.testing.assert_allclose(batch.returns_to_go.numpy(), data.returns_to_go(0.5)[rows])
    # Seeded and resumable.
    state = sampler.state_dict()
    again = FrameSampler(data, batch_size=64, seed=0)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.sample().rows, sampler.sample().rows)


def test_subsets_keep_only_their_frames_and_the_same_stacks() -> None:
    data = _three_episodes()
    part = data.select_episodes(np.array([1]))  # episode B alone
    assert len(part) == 2 and part.frames.shape[0] == 5  # 2 pads + frames 3, 4, 5
    assert _ids(part.stacked([0, 1])) == [[3, 3, 3], [3, 3, 4]]
    assert _ids(part.stacked([0, 1], next_obs=True)) == [[3, 3, 4], [3, 4, 5]]
    tenth = data.subsample_episodes(0.34, seed=0)
    assert tenth.stats().num_episodes == 1
    assert tenth.fingerprint() != data.fingerprint()


def test_to_dataset_materialises_every_stack() -> None:
    data = _three_episodes()
    full = data.to_dataset()
    assert full.observations.shape == (6, 3, H, W) and full.discrete
    np.testing.assert_array_equal(full.next_observations[4], data.stacked([4], next_obs=True)[0])
    np.testing.assert_array_equal(full.returns_to_go(0.9), data.returns_to_go(0.9))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"frames": np.zeros((8, H, W), np.float32)}, "frames"),
        ({"frames": np.zeros((8, H * W), np.uint8)}, "frames"),
        ({"actions": np.arange(7)}, "actions"),
        ({"actions": -np.ones(8, np.int64)}, "actions"),
        ({"actions": np.zeros(8, np.float32)}, "actions"),
        ({"rewards": np.r_[np.zeros(3), np.nan, np.zeros(4)]}, "rewards"),
    ],
)
def test_malformed_steps_are_refused_naming_the_field(change: dict, field: str) -> None:
    args = {
        "frames": _frames(8),
        "actions": np.zeros(8, np.int64),
        "rewards": np.zeros(8, np.float32),
        "terminals": np.zeros(8, bool),
        "timeouts": np.zeros(8, bool),
    }
    with pytest.raises(DatasetError, match=f"^{field}:"):
        FrameDataset.from_steps(**{**args, **change})


def test_an_index_outside_the_frames_is_refused() -> None:
    data = _three_episodes()
    with pytest.raises(DatasetError, match="^index:"):
        FrameDataset(
            data.frames, data.index + 10, data.actions, data.rewards, data.terminals,
            data.timeouts, 3,
        )  # fmt: skip
    with pytest.raises(DatasetError, match="^actions: index 2 outside"):
        data.check_action_space(0, 2)


def _game(n: int = 400, seed: int = 0) -> FrameDataset:
    """10 x 10 single-channel frames in 4-stacks (MinAtar's CNN size), episodes of 40 steps."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((n, 10, 10)) < 0.1).astype(np.uint8) * 255
    return FrameDataset.from_steps(
        frames, rng.integers(0, 3, n), rng.standard_normal(n).astype(np.float32),
        np.arange(n) % 40 == 39, np.zeros(n, bool), 4, metadata={"note": "synthetic"},
    )  # fmt: skip


def test_frames_file_round_trips_and_load_npz_points_to_it(tmp_path: Path) -> None:
    from offrl.data import load_npz
    from offrl.data.frames import is_frames_file, load_frames, save_frames

    data = _game()
    path = save_frames(data, tmp_path / "game.npz")
    assert is_frames_file(path)
    back = load_frames(path)
    for name in ("frames", "index", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.stack == 4 and back.metadata == data.metadata
    assert back.fingerprint() == data.fingerprint()
    with pytest.raises(DatasetError, match="^frames: .*load_frames"):
        load_npz(path)


def test_training_on_stored_frames_equals_training_on_the_stacks(tmp_path: Path) -> None:
    """``offrl train`` on a frames file draws the same rows as on the same data with every stack
    materialised, and trains the same weights (a terminal's next observation, which differs
    as a placeholder, never counts)."""
    from offrl.data import save_npz
    from offrl.data.frames import save_frames
    from offrl.train import TrainConfig, train
    from offrl.train.checkpoint import load_checkpoint

    data = _game()
    stored = save_frames(data, tmp_path / "frames.npz")
    stacks = save_npz(data.to_dataset(), tmp_path / "stacks.npz")
    states = []
    for name, path in (("frames", stored), ("stacks", stacks)):
        final = train(
            TrainConfig(
                algo="discrete_cql", dataset=str(path), steps=30, eval_every=0,
                final_eval_episodes=0, eval_episodes=1, out=str(tmp_path / name),
                progress=False, threads=1, norm_obs=False,
                algo_config={"num_quantiles": 8, "batch_size": 16, "target_update_every": 10},
            )
        )  # fmt: skip
        assert final["status"] == "completed"
        states.append(load_checkpoint(tmp_path / name / "checkpoints" / "latest.pt")["algo"])
    for key, value in states[0]["q"].items():
        assert torch.equal(value, states[1]["q"][key]), key


def test_training_on_a_fraction_of_stored_frames(tmp_path: Path) -> None:
    import json

    from offrl.data.frames import save_frames
    from offrl.train import TrainConfig, train

    path = save_frames(_game(), tmp_path / "frames.npz")
    train(
        TrainConfig(
            algo="discrete_bcq", dataset=str(path), steps=5, eval_every=0, final_eval_episodes=0,
            out=str(tmp_path / "run"), progress=False, threads=1, data_fraction=0.3,
            algo_config={"batch_size": 8},
        )
    )  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["episodes"] == 3  # 30 % of 10 episodes
