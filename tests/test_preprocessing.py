"""Observation normalisation, reward transforms, action scaling and the tensor sampler."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from offrl.data import Dataset
from offrl.data.normalization import ObsNormalizer, RewardTransform, preprocess
from offrl.data.sampler import Batch, TensorSampler


def _toy() -> Dataset:
    """7 rows: obs row i is [2i, 1] (second feature constant), next_obs = obs + 0.5.

    Episodes: rows [0, 1, 2] (terminal), [3, 4] (timeout), [5, 6] (final row). Rewards 1..7, so
    episode returns are 6, 9 and 13. Actions lie in [-2, 2] x [0, 4].
    """
    i = np.arange(7, dtype=np.float32)
    obs = np.stack([2 * i, np.ones(7, np.float32)], axis=1)
    actions = np.stack([i / 3 - 1, i / 1.5], axis=1).astype(np.float32)
    return Dataset.from_arrays(
        observations=obs,
        actions=actions,
        rewards=np.arange(1, 8, dtype=np.float32),
        next_observations=obs + 0.5,
        terminals=[0, 0, 1, 0, 0, 0, 0],
        timeouts=[0, 0, 0, 0, 1, 0, 0],
        env_id="Toy-v0",
    )


# ---------------------------------------------------------------------- observations
def test_obs_normalizer_from_dataset_hand_computed() -> None:
    norm = ObsNormalizer.from_dataset(_toy())
    # Feature 0 is 0, 2, ..., 12: mean 6, population variance (36+16+4+0+4+16+36)/7 = 16.
    np.testing.assert_allclose(norm.mean, [6.0, 1.0], rtol=1e-7)
    np.testing.assert_allclose(norm.std, [4.0 + 1e-3, 0.0 + 1e-3], rtol=1e-6)
    assert norm.mean.dtype == np.float32 and norm.std.dtype == np.float32
    out = norm(np.array([[10.0, 1.0], [6.0, 3.0]], np.float32))
    np.testing.assert_allclose(out, [[4.0 / 4.001, 0.0], [0.0, 2.0 / 1e-3]], rtol=1e-5)
    assert out.dtype == np.float32


def test_obs_normalizer_eps() -> None:
    norm = ObsNormalizer.from_dataset(_toy(), eps=0.5)
    np.testing.assert_allclose(norm.std, [4.5, 0.5], rtol=1e-6)


def test_obs_normalizer_identity() -> None:
    norm = ObsNormalizer.identity((2,))
    np.testing.assert_array_equal(norm.mean, [0.0, 0.0])
    np.testing.assert_array_equal(norm.std, [1.0, 1.0])
    x = np.array([[3.5, -2.0]], np.float32)
    np.testing.assert_array_equal(norm(x), x)


# ---------------------------------------------------------------------- rewards
def test_reward_transform_none() -> None:
    r = RewardTransform().apply(_toy())
    np.testing.assert_array_equal(r, np.arange(1, 8))
    assert r.dtype == np.float32


def test_reward_transform_scale_and_shift() -> None:
    r = RewardTransform("none", scale=2.0, shift=-1.0).apply(_toy())
    np.testing.assert_allclose(r, 2.0 * np.arange(1, 8) - 1.0)


def test_reward_transform_return_range() -> None:
    # Episode returns 6, 9, 13: the range is 7, so r -> r / 7 * 1000.
    r = RewardTransform("return_range").apply(_toy())
    np.testing.assert_allclose(r, np.arange(1, 8) / 7.0 * 1000.0, rtol=1e-6)
    r2 = RewardTransform("return_range", scale=0.5, shift=3.0).apply(_toy())
    np.testing.assert_allclose(r2, np.arange(1, 8) / 7.0 * 1000.0 * 0.5 + 3.0, rtol=1e-6)


def test_reward_transform_unknown_mode() -> None:
    with pytest.raises(ValueError, match="reward mode"):
        RewardTransform("bogus").apply(_toy())


# ---------------------------------------------------------------------- preprocess
def test_preprocess_hand_computed() -> None:
    ds = _toy()
    before = {k: v.copy() for k, v in ds.arrays().items()}
    norm = ObsNormalizer(np.array([6.0, 1.0], np.float32), np.array([4.0, 2.0], np.float32))
    out = preprocess(ds, norm, RewardTransform("none", scale=10.0), (-2.0, 0.0), (2.0, 4.0))
    np.testing.assert_allclose(out.observations[:, 0], (2 * np.arange(7) - 6) / 4.0, rtol=1e-6)
    np.testing.assert_allclose(out.observations[:, 1], 0.0)
    np.testing.assert_allclose(out.next_observations[:, 0], (2 * np.arange(7) + 0.5 - 6) / 4)
    np.testing.assert_allclose(out.next_observations[:, 1], 0.25)
    np.testing.assert_allclose(out.rewards, 10.0 * np.arange(1, 8))
    # Actions: [-2, 2] -> [-1, 1] is a / 2; [0, 4] -> [-1, 1] is a / 2 - 1.
    i = np.arange(7)
    np.testing.assert_allclose(out.actions[:, 0], (i / 3 - 1) / 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.actions[:, 1], (i / 1.5) / 2 - 1, rtol=1e-6, atol=1e-7)
    assert out.actions.min() >= -1 and out.actions.max() <= 1
    assert out.actions.dtype == np.float32
    np.testing.assert_array_equal(out.terminals, ds.terminals)
    np.testing.assert_array_equal(out.timeouts, ds.timeouts)
    assert out.env_id == "Toy-v0"
    # The input dataset is not modified.
    for k, v in ds.arrays().items():
        np.testing.assert_array_equal(v, before[k])


def test_preprocess_action_end_points_and_clip() -> None:
    obs = np.zeros((3, 1), np.float32)
    ds = Dataset.from_arrays(
        observations=obs,
        actions=np.array([[-2.0, 1.0], [2.0, 3.0], [0.0, 2.0]], np.float32),
        rewards=np.zeros(3, np.float32),
        next_observations=obs,
    )
    out = preprocess(ds, ObsNormalizer.identity((1,)), None, (-2.0, -1.0), (2.0, 3.0))
    np.testing.assert_allclose(out.actions, [[-1.0, 0.0], [1.0, 1.0], [0.0, 0.5]])
    np.testing.assert_array_equal(out.rewards, ds.rewards)  # no transform given


def test_preprocess_without_bounds_keeps_actions() -> None:
    ds = _toy()
    out = preprocess(ds, ObsNormalizer.identity((2,)))
    np.testing.assert_array_equal(out.actions, ds.actions)
    np.testing.assert_array_equal(out.observations, ds.observations)


# ---------------------------------------------------------------------- sampler
def _recognisable(n: int = 50) -> Dataset:
    """Row i: obs [i, -i], next_obs [i + 0.5, -i], action [i/n, -i/n, 0.5], reward 3i.

    Episodes of 5 steps; even-numbered episodes end in a terminal, odd ones in a timeout.
    """
    i = np.arange(n, dtype=np.float32)
    obs = np.stack([i, -i], axis=1)
    ends = (np.arange(n) % 5) == 4
    even = (np.arange(n) // 5) % 2 == 0
    return Dataset.from_arrays(
        observations=obs,
        actions=np.stack([i / n, -i / n, np.full(n, 0.5, np.float32)], axis=1),
        rewards=3 * i,
        next_observations=obs + np.array([0.5, 0.0], np.float32),
        terminals=ends & even,
        timeouts=ends & ~even,
    )


def test_sampler_shapes_and_dtypes() -> None:
    batch = TensorSampler(_recognisable(), batch_size=16, seed=0).sample()
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (16, 2) and batch.next_obs.shape == (16, 2)
    assert batch.actions.shape == (16, 3)
    assert batch.rewards.shape == (16,) and batch.dones.shape == (16,)
    for t in batch[:5]:
        assert t.dtype == torch.float32
    assert batch.rows is not None and batch.rows.dtype == torch.int64  # the rows drawn


def test_sampler_rows_are_dataset_rows() -> None:
    ds = _recognisable()
    sampler = TensorSampler(ds, batch_size=64, seed=3)
    seen: set[int] = set()
    for _ in range(20):
        b = sampler.sample()
        rows = b.obs[:, 0].numpy().astype(np.int64)
        np.testing.assert_array_equal(b.obs.numpy(), ds.observations[rows])
        np.testing.assert_array_equal(b.next_obs.numpy(), ds.next_observations[rows])
        np.testing.assert_array_equal(b.actions.numpy(), ds.actions[rows])
        np.testing.assert_array_equal(b.rewards.numpy(), ds.rewards[rows])
        np.testing.assert_array_equal(b.dones.numpy(), ds.terminals[rows].astype(np.float32))
        seen.update(rows.tolist())
    assert seen == set(range(len(ds)))  # uniform with replacement: 1280 draws cover 50 rows


def test_sampler_dones_are_terminals_only() -> None:
    ds = _recognisable()
    assert ds.terminals.sum() == 5 and ds.timeouts.sum() == 5
    b = TensorSampler(ds, batch_size=2000, seed=0).sample()
    rows = b.obs[:, 0].numpy().astype(np.int64)
    assert ds.timeouts[rows].any() and ds.terminals[rows].any()
    assert (b.dones.numpy()[ds.timeouts[rows]] == 0.0).all()
    assert (b.dones.numpy()[ds.terminals[rows]] == 1.0).all()
    assert set(np.unique(b.dones.numpy()).tolist()) == {0.0, 1.0}


def test_sampler_seeded() -> None:
    ds = _recognisable()
    a, b, c = (
        TensorSampler(ds, 32, seed=s, next_actions=True, returns_gamma=0.9) for s in (7, 7, 8)
    )
    for _ in range(5):
        ba, bb, bc = a.sample(), b.sample(), c.sample()
        for x, y in zip(ba, bb, strict=True):
            assert torch.equal(x, y)
    assert not torch.equal(ba.obs, bc.obs)


def test_sampler_ignores_global_rng() -> None:
    ds = _recognisable()
    torch.manual_seed(0)
    first = TensorSampler(ds, 32, seed=1).sample()
    torch.manual_seed(123)
    torch.rand(10)
    second = TensorSampler(ds, 32, seed=1).sample()
    assert torch.equal(first.obs, second.obs)


def test_sampler_state_dict_replays_sequence() -> None:
    ds = _recognisable()
    sampler = TensorSampler(ds, 16, seed=5, next_actions=True, returns_gamma=0.9)  # every field
    for _ in range(3):
        sampler.sample()
    state = sampler.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    expected = [sampler.sample() for _ in range(4)]
    # Into the same sampler and into a fresh one with another seed.
    for target in (sampler, TensorSampler(ds, 16, seed=99, next_actions=True, returns_gamma=0.9)):
        target.load_state_dict(loaded)
        for want in expected:
            got = target.sample()
            for x, y in zip(got, want, strict=True):
                assert torch.equal(x, y)


def test_sampler_image_and_discrete_fields() -> None:
    """uint8 observations and integer actions keep their dtypes (separate tensors)."""
    n = 12
    obs = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2)
    ds = Dataset.from_arrays(
        observations=obs,
        actions=np.arange(n) % 3,
        rewards=np.arange(n, dtype=np.float32),
        next_observations=obs + 1,
        terminals=np.arange(n) == n - 1,
    )
    b = TensorSampler(ds, 8, seed=0).sample()
    assert b.obs.dtype == torch.uint8 and b.obs.shape == (8, 2, 2)
    assert b.actions.dtype == torch.int64 and b.actions.shape == (8,)
    rows = b.rewards.numpy().astype(np.int64)
    np.testing.assert_array_equal(b.obs.numpy(), obs[rows])
    np.testing.assert_array_equal(b.next_obs.numpy(), obs[rows] + 1)
    np.testing.assert_array_equal(b.actions.numpy(), rows % 3)
    np.testing.assert_array_equal(b.dones.numpy(), (rows == n - 1).astype(np.float32))


def test_sampler_multidim_float_obs() -> None:
    n = 10
    obs = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3)
    ds = Dataset.from_arrays(
        observations=obs,
        actions=np.zeros((n, 1), np.float32),
        rewards=np.arange(n, dtype=np.float32),
        next_observations=-obs,
    )
    b = TensorSampler(ds, 5, seed=0).sample()
    assert b.obs.shape == (5, 2, 3) and b.next_obs.shape == (5, 2, 3)
    rows = b.rewards.numpy().astype(np.int64)
    np.testing.assert_array_equal(b.obs.numpy(), obs[rows])
    np.testing.assert_array_equal(b.next_obs.numpy(), -obs[rows])
    assert math.isclose(float(b.actions.abs().sum()), 0.0)
