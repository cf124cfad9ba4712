"""AWR and %BC: the data helpers by hand, the trainer's data hooks, AWR's returns and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from offrl.algos import AWR, AWRConfig, EnvSpec
from offrl.data import Dataset, DatasetError, load_dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import Batch, TensorSampler
from offrl.train import TrainConfig, load_checkpoint, train


def _small() -> Dataset:
    """7 rows; episodes [0,1,2] (terminal), [3,4] (timeout), [5,6] (final row, no flag)."""
    obs = np.stack([np.arange(7), 10 + np.arange(7)], axis=1).astype(np.float32)
    return Dataset(
        observations=obs,
        actions=np.linspace(-1, 1, 14, dtype=np.float32).reshape(7, 2),
        rewards=np.arange(1, 8, dtype=np.float32),  # 1..7
        next_observations=obs + 0.5,
        terminals=np.array([0, 0, 1, 0, 0, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 1, 0, 0], bool),
    )


# ---------------------------------------------------------------------- returns-to-go
def test_returns_to_go_monte_carlo_by_hand() -> None:
    ds = _small()
    # gamma = 1: the undiscounted sums to the end of each episode.
    np.testing.assert_array_equal(ds.returns_to_go(), [6, 5, 3, 9, 5, 13, 7])
    # gamma = 0.5, no values: truncated episodes end as if terminal.
    np.testing.assert_allclose(ds.returns_to_go(0.5), [2.75, 3.5, 3, 6.5, 5, 9.5, 7])


V_NEXT = np.array([10.0, 20, 30, 40, 50, 60, 70])


def test_returns_to_go_bootstraps_truncations_only() -> None:
    ds = _small()
    # lam = 1 with values: Monte Carlo, plus gamma V(s') at the timeout (row 4) and at the
    # unflagged final row (6); never at the terminal (row 2, its V(s') = 30 is ignored).
    expected = [2.75, 3.5, 3, 4 + 0.5 * (5 + 0.5 * 50), 5 + 0.5 * 50, 6 + 0.5 * 42, 7 + 0.5 * 70]
    np.testing.assert_allclose(ds.returns_to_go(0.5, 1.0, V_NEXT), expected)
    # lam = 0: one-step TD targets r + gamma (1 - terminal) V(s').
    np.testing.assert_allclose(ds.returns_to_go(0.5, 0.0, V_NEXT), [6, 12, 3, 24, 30, 36, 42])


def test_returns_to_go_td_lambda_by_hand() -> None:
    # G_t = r_t + gamma ((1 - lam) V(s'_t) + lam G_{t+1}), gamma = lam = 0.5:
    # G2 = 3 (terminal); G1 = 2 + 0.5 (10 + 1.5) = 7.75; G0 = 1 + 0.5 (5 + 3.875) = 5.4375
    # G4 = 5 + 0.5 * 50 = 30 (timeout); G3 = 4 + 0.5 (20 + 15) = 21.5
    # G6 = 7 + 0.5 * 70 = 42 (final row); G5 = 6 + 0.5 (30 + 21) = 31.5
    got = _small().returns_to_go(0.5, 0.5, V_NEXT)
    np.testing.assert_allclose(got, [5.4375, 7.75, 3, 21.5, 30, 31.5, 42])


def test_returns_to_go_errors() -> None:
    with pytest.raises(ValueError, match="needs next_values"):
        _small().returns_to_go(0.9, 0.95)
    with pytest.raises(ValueError, match="next_values"):
        _small().returns_to_go(0.9, 0.95, np.zeros(3))


# ---------------------------------------------------------------------- top episodes
def _episodes(returns: list[float], length: int = 3) -> Dataset:
    """Episodes of ``length`` rows with the given returns; row i's observation is [i, i]."""
    n = len(returns) * length
    rewards = np.repeat(np.asarray(returns, np.float32) / length, length)
    obs = np.repeat(np.arange(n, dtype=np.float32)[:, None], 2, axis=1)
    ends = np.zeros(n, bool)
    ends[length - 1 :: length] = True
    kinds = np.arange(n) // length % 2 == 0  # even episodes end in a terminal, odd in a timeout
    ends[-1] = False  # the last one ends by being the last row
    return Dataset(obs, np.zeros((n, 1), np.float32), rewards, obs + 1, ends & kinds, ends & ~kinds)


@pytest.mark.parametrize(
    ("frac", "kept"),
    [(0.4, [1, 3]), (0.5, [1, 3]), (0.6, [1, 3, 4]), (0.01, [1]), (1.0, [0, 1, 2, 3, 4])],
)
def test_top_episodes_keeps_exactly_the_best(frac: float, kept: list[int]) -> None:
    ds = _episodes([-5, 10, 3, 10, 7])  # a tie at the top; the earlier one wins a cut
    top = ds.top_episodes(frac)  # max(1, int(frac * 5)) episodes, in their original order
    rows = np.concatenate([np.arange(3 * e, 3 * e + 3) for e in kept])
    np.testing.assert_array_equal(top.observations[:, 0], rows)
    np.testing.assert_array_equal(top.terminals, ds.terminals[rows])
    np.testing.assert_array_equal(top.timeouts, ds.timeouts[rows])
    np.testing.assert_allclose(top.episode_returns(), ds.episode_returns()[kept])
    assert top.metadata["top_episodes_fraction"] == frac


def test_top_episodes_rejects_bad_fraction() -> None:
    for frac in (0.0, 1.5):
        with pytest.raises(DatasetError, match="fraction"):
            _small().top_episodes(frac)


# ---------------------------------------------------------------------- the trainer's hooks
def test_bc_pct_trains_on_the_best_episodes_with_their_statistics(tmp_path: Path) -> None:
    name = "pendulum-medium-expert-v0"  # 100 medium episodes (about -528), then 100 expert
    run = tmp_path / "run"
    train(
        TrainConfig(
            algo="bc_pct",
            dataset=name,
            steps=2,
            out=str(run),
            eval_episodes=1,
            progress=False,
            algo_config={"frac": 0.1},
        )
    )
    top = load_dataset(name).top_episodes(0.1)
    assert top.stats().num_episodes == 20 and top.stats().return_mean > -200  # expert ones
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["transitions"] == 40_000  # the whole data is still described
    assert config["dataset"]["transitions_trained_on"] == len(top)
    state = load_checkpoint(run / "checkpoints" / "latest.pt")["algo"]
    expected = ObsNormalizer.from_dataset(top)
    np.testing.assert_array_equal(state["obs_mean"].numpy(), expected.mean)
    np.testing.assert_array_equal(state["obs_std"].numpy(), expected.std)


def test_sampler_batches_name_their_rows() -> None:
    ds = _small()
    batch = TensorSampler(ds, batch_size=32, seed=0).sample()
    assert batch.rows is not None and batch.rows.dtype == torch.int64
    np.testing.assert_array_equal(batch.obs.numpy(), ds.observations[batch.rows.numpy()])


# ---------------------------------------------------------------------- AWR
def _awr(**kw: object) -> AWR:
    return AWR(EnvSpec((2,), 2), AWRConfig(hidden=(8,), gamma=0.5, **kw), seed=0)  # type: ignore[arg-type]


def test_awr_targets_by_hand() -> None:
    algo, ds = _awr(lam=0.5, beta=2.0, max_weight=1.5), _small()
    algo.attach_data(ds)
    algo.recompute_targets()
    with torch.no_grad():
        v = algo.value_snapshot(torch.from_numpy(ds.observations))[0].double().numpy()
        v_next = algo.value_snapshot(torch.from_numpy(ds.next_observations))[0].double().numpy()
    returns = ds.returns_to_go(0.5, 0.5, v_next)
    np.testing.assert_allclose(algo.targets["returns"].numpy(), returns, rtol=1e-5)
    adv = returns - v
    adv = (adv - adv.mean()) / (adv.std() + 1e-5)
    weights = np.minimum(np.exp(adv / 2.0), 1.5)
    np.testing.assert_allclose(algo.targets["weights"].numpy(), weights, rtol=1e-4)
    assert math.isclose(float(algo.targets["weights"].max()), 1.5)  # the clip is reached


def test_awr_needs_the_data_and_batch_rows() -> None:
    algo = _awr()
    batch = TensorSampler(_small(), batch_size=4).sample()
    with pytest.raises(RuntimeError, match="attach_data"):
        algo.update(batch)
    algo.attach_data(_small())
    with pytest.raises(ValueError, match="Batch.rows"):
        algo.update(Batch(*batch[:5]))


def test_awr_resume_is_exact(tmp_path: Path) -> None:
    """A run resumed from a checkpoint between two recomputations of the returns ends with the
    same parameters as an uninterrupted one: the returns come back from the saved V snapshot."""

    def run(out: Path, steps: int, resume: bool = False) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(
            algo="awr",
            dataset="pendulum-medium-v0",
            steps=steps,
            seed=1,
            out=str(out),
            eval_every=0,
            eval_episodes=1,
            checkpoint_every=50,
            progress=False,
            algo_config={"recompute_every": 30, "hidden": (32, 32)},
        )
        train(cfg, resume=resume, allow_changes=["steps"] if resume else ())
        return load_checkpoint(out / "checkpoints" / "latest.pt")["algo"]  # type: ignore[no-any-return]

    whole = run(tmp_path / "a", 120)
    run(tmp_path / "b", 50)  # checkpoint at 50: the returns were last computed at 30
    resumed = run(tmp_path / "b", 120, resume=True)
    assert resumed["num_updates"] == 120
    _assert_same(whole, resumed)


def _assert_same(a: object, b: object, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)
