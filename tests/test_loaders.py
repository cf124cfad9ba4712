"""File formats: D4RL HDF5, Minari directories, offrl .npz, and load_dataset/save_dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from offrl.data import (
    Dataset,
    DatasetError,
    load_d4rl_hdf5,
    load_dataset,
    load_minari,
    load_npz,
    registry,
    save_d4rl_hdf5,
    save_dataset,
    save_minari,
    save_npz,
)

# ====================================================================== D4RL layout
N = 6
D4RL_OBS = np.stack([np.arange(N), -np.arange(N), 0.5 * np.arange(N)], axis=1).astype(np.float32)
D4RL_ACT = np.stack([0.1 * np.arange(N), -0.1 * np.arange(N)], axis=1).astype(np.float32)
D4RL_REW = np.arange(N, dtype=np.float32)
D4RL_TERM = np.array([0, 0, 1, 0, 0, 0], dtype=bool)
D4RL_TOUT = np.array([0, 0, 0, 0, 1, 0], dtype=bool)


def write_d4rl(
    path: Path,
    *,
    next_obs: bool,
    extras: bool = True,
    column: bool = False,
    timeouts: bool = True,
    drop: str | None = None,
) -> Path:
    with h5py.File(path, "w") as f:
        data = {
            "observations": D4RL_OBS,
            "actions": D4RL_ACT,
            "rewards": D4RL_REW[:, None] if column else D4RL_REW,
            "terminals": D4RL_TERM[:, None] if column else D4RL_TERM,
        }
        if timeouts:
            data["timeouts"] = D4RL_TOUT[:, None] if column else D4RL_TOUT
        if next_obs:
            data["next_observations"] = D4RL_OBS + 100
        for key, value in data.items():
            if key != drop:
                f.create_dataset(key, data=value)
        if extras:
            f.attrs["env_name"] = "Hopper-v4"
            f.create_dataset("infos/qpos", data=np.zeros((N, 3)))
            f.create_dataset("infos/goal", data=np.zeros((N, 2)))
            f.create_dataset("metadata/algorithm", data=b"SAC")
            f.create_dataset("metadata/iteration", data=42)
            f.create_dataset("metadata/policy/fc0/weight", data=np.ones((4, 4)))
            f["metadata"].attrs["author"] = "someone"
    return path


def test_d4rl_with_next_observations(tmp_path: Path) -> None:
    path = write_d4rl(tmp_path / "d.hdf5", next_obs=True)
    ds = load_d4rl_hdf5(path)
    assert len(ds) == N
    np.testing.assert_array_equal(ds.observations, D4RL_OBS)
    np.testing.assert_array_equal(ds.next_observations, D4RL_OBS + 100)
    np.testing.assert_array_equal(ds.actions, D4RL_ACT)
    np.testing.assert_array_equal(ds.rewards, D4RL_REW)
    np.testing.assert_array_equal(ds.terminals, D4RL_TERM)
    np.testing.assert_array_equal(ds.timeouts, D4RL_TOUT)
    assert ds.env_id == "Hopper-v4"  # from the root attribute env_name
    assert ds.metadata["source"] == str(path)
    assert ds.metadata["format"] == "d4rl-hdf5"
    assert "dropped_steps" not in ds.metadata
    assert ds.metadata["file_metadata"] == {
        "env_name": "Hopper-v4",
        "author": "someone",
        "algorithm": "SAC",
        "iteration": 42,
    }
    # nothing silently dropped: every dataset not read is listed
    assert ds.metadata["ignored_keys"] == [
        "infos/goal",
        "infos/qpos",
        "metadata/policy/fc0/weight",
    ]


def test_d4rl_without_next_observations_applies_timeout_rule(tmp_path: Path) -> None:
    path = write_d4rl(tmp_path / "d.hdf5", next_obs=False)
    ds = load_d4rl_hdf5(path, env_id="Hopper-v5")
    # row 4 is a timeout (no logged successor) and row 5 the unflagged final row: both dropped;
    # row 3 becomes the truncated end of its episode.
    assert ds.metadata["dropped_steps"] == 2
    np.testing.assert_array_equal(ds.observations, D4RL_OBS[:4])
    np.testing.assert_array_equal(ds.next_observations, D4RL_OBS[1:5])
    np.testing.assert_array_equal(ds.actions, D4RL_ACT[:4])
    np.testing.assert_array_equal(ds.rewards, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 1])
    assert ds.env_id == "Hopper-v5"  # the argument wins over the file


def test_d4rl_column_arrays_and_no_timeouts(tmp_path: Path) -> None:
    path = write_d4rl(tmp_path / "c.hdf5", next_obs=True, extras=False, column=True)
    ds = load_d4rl_hdf5(path)
    np.testing.assert_array_equal(ds.rewards, D4RL_REW)
    np.testing.assert_array_equal(ds.terminals, D4RL_TERM)
    np.testing.assert_array_equal(ds.timeouts, D4RL_TOUT)
    assert ds.env_id is None
    assert "ignored_keys" not in ds.metadata and "file_metadata" not in ds.metadata

    path = write_d4rl(tmp_path / "t.hdf5", next_obs=True, extras=False, timeouts=False)
    ds = load_d4rl_hdf5(path)
    assert not ds.timeouts.any()
    np.testing.assert_array_equal(ds.episode_ends, [2, 5])


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals"])
def test_d4rl_missing_key(tmp_path: Path, key: str) -> None:
    path = write_d4rl(tmp_path / "m.hdf5", next_obs=False, drop=key)
    with pytest.raises(DatasetError, match=f"^{key}: required dataset missing") as info:
        load_d4rl_hdf5(path)
    assert str(path) in str(info.value)


def test_d4rl_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="^path: file not found"):
        load_d4rl_hdf5(tmp_path / "nope.hdf5")
    text = tmp_path / "text.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="^path: cannot read"):
        load_d4rl_hdf5(text)
    bad = write_d4rl(tmp_path / "nan.hdf5", next_obs=True, extras=False)
    with h5py.File(bad, "a") as f:
        f["rewards"][3] = np.nan
    with pytest.raises(DatasetError, match="^rewards: contains NaN") as info:
        load_d4rl_hdf5(bad)
    assert str(bad) in str(info.value)
    grouped = tmp_path / "group.hdf5"
    with h5py.File(grouped, "w") as f:
        f.create_dataset("observations/pos", data=np.zeros((3, 2)))
        for key in ("actions", "rewards", "terminals"):
            f.create_dataset(key, data=np.zeros(3))
    with pytest.raises(DatasetError, match="^observations: is an HDF5 group"):
        load_d4rl_hdf5(grouped)


# ====================================================================== Minari layout
NUM_EPISODES = 12


def _episode(i: int) -> dict[str, np.ndarray]:
    """Episode i: T = 1 + i % 3 steps, observation t = [i, t], reward 10 i + t.

    Even episodes terminate, odd ones are truncated.
    """
    steps = 1 + i % 3
    t = np.arange(steps + 1)
    terminations = np.zeros(steps, dtype=bool)
    truncations = np.zeros(steps, dtype=bool)
    (terminations if i % 2 == 0 else truncations)[-1] = True
    return {
        "observations": np.stack([np.full(steps + 1, i), t], axis=1).astype(np.float32),
        "actions": (i + 0.5 * t[:-1]).reshape(steps, 1).astype(np.float32),
        "rewards": (10.0 * i + t[:-1]).astype(np.float64),
        "terminations": terminations,
        "truncations": truncations,
    }


def write_minari(
    root: Path, *, metadata_json: bool = False, dict_obs: bool = False, env_spec: bool = True
) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w") as f:
        f.attrs["total_episodes"] = NUM_EPISODES
        f.attrs["total_steps"] = 24
        if not metadata_json:
            f.attrs["dataset_id"] = "test/point-v0"
            if env_spec:
                f.attrs["env_spec"] = json.dumps({"id": "PointMaze_UMaze-v3", "kwargs": {}})
        for i in [5, 11, 0, 3, 10, 1, 2, 4, 6, 7, 8, 9]:
            group = f.create_group(f"episode_{i}")
            group.attrs["id"] = i
            group.attrs["seed"] = 100 + i
            for key, value in _episode(i).items():
                if key == "observations" and dict_obs:
                    group.create_dataset("observations/achieved_goal", data=value)
                    group.create_dataset("observations/observation", data=value)
                else:
                    group.create_dataset(key, data=value)
            group.create_dataset("infos/success", data=np.zeros(len(value), dtype=bool))
    if metadata_json:
        meta = {
            "dataset_id": "test/json-v1",
            "data_format": "hdf5",
            "total_episodes": NUM_EPISODES,
            "env_spec": json.dumps({"id": "CartPole-v1"}),
            "minari_version": "0.5.1",
        }
        (data / "metadata.json").write_text(json.dumps(meta))
    return root


def _expected_minari() -> dict[str, np.ndarray]:
    eps = [_episode(i) for i in range(NUM_EPISODES)]  # numeric order: 9 before 10 and 11
    return {
        "observations": np.concatenate([e["observations"][:-1] for e in eps]),
        "next_observations": np.concatenate([e["observations"][1:] for e in eps]),
        "actions": np.concatenate([e["actions"] for e in eps]),
        "rewards": np.concatenate([e["rewards"] for e in eps]),
        "terminals": np.concatenate([e["terminations"] for e in eps]),
        "timeouts": np.concatenate([e["truncations"] for e in eps]),
    }


def test_minari_directory(tmp_path: Path) -> None:
    root = write_minari(tmp_path / "point-v0")
    ds = load_minari(root)
    expected = _expected_minari()
    assert len(ds) == 24
    for name, value in expected.items():
        np.testing.assert_array_equal(getattr(ds, name), value, err_msg=name)
    # hand-computed: episode lengths 1, 2, 3, 1, 2, 3, ...; ends are cumulative lengths - 1
    lengths = np.array([1 + i % 3 for i in range(NUM_EPISODES)])
    np.testing.assert_array_equal(ds.episode_ends, np.cumsum(lengths) - 1)
    np.testing.assert_array_equal(ds.episode_ends[:4], [0, 2, 5, 6])
    # return of episode i = sum_t (10 i + t) = 10 i T + T (T - 1) / 2
    np.testing.assert_array_equal(
        ds.episode_returns(), [10 * i * T + T * (T - 1) / 2 for i, T in enumerate(lengths)]
    )
    np.testing.assert_array_equal(ds.episode_returns()[9:], [90 + 0, 200 + 1, 330 + 3])
    # first rows: episode 0 (1 step, terminated), episode 1 (2 steps, truncated)
    np.testing.assert_array_equal(ds.observations[:3], [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(ds.next_observations[:3], [[0, 1], [1, 1], [1, 2]])
    np.testing.assert_array_equal(ds.terminals[:3], [1, 0, 0])
    np.testing.assert_array_equal(ds.timeouts[:3], [0, 0, 1])
    assert ds.env_id == "PointMaze_UMaze-v3"
    assert ds.metadata["format"] == "minari"
    assert ds.metadata["source"] == str(root)
    assert ds.metadata["dataset_id"] == "test/point-v0"
    assert ds.metadata["minari"]["total_episodes"] == NUM_EPISODES
    assert "ignored_keys" not in ds.metadata
    assert "unflagged_episode_ends" not in ds.metadata


def test_minari_other_paths_and_metadata_json(tmp_path: Path) -> None:
    root = write_minari(tmp_path / "json-v1", metadata_json=True)
    expected = _expected_minari()
    for path in (root, root / "data", root / "data" / "main_data.hdf5"):
        ds = load_minari(path)
        np.testing.assert_array_equal(ds.observations, expected["observations"])
        assert ds.env_id == "CartPole-v1"
        assert ds.metadata["dataset_id"] == "test/json-v1"
        assert ds.metadata["minari"]["minari_version"] == "0.5.1"
    assert load_minari(root, env_id="Custom-v0").env_id == "Custom-v0"


def test_minari_without_env_spec(tmp_path: Path) -> None:
    ds = load_minari(write_minari(tmp_path / "x", env_spec=False))
    assert ds.env_id is None


def test_minari_dict_observations_rejected(tmp_path: Path) -> None:
    root = write_minari(tmp_path / "dict", dict_obs=True)
    with pytest.raises(DatasetError, match="^observations: dict observation spaces are not"):
        load_minari(root)


def test_minari_unflagged_episode_end(tmp_path: Path) -> None:
    root = write_minari(tmp_path / "u")
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        f["episode_0/terminations"][-1] = False  # episode 0 (1 step) now ends with no flag
        f.create_dataset("notes", data=np.zeros(2))
    ds = load_minari(root)
    assert ds.metadata["unflagged_episode_ends"] == 1
    assert ds.metadata["ignored_keys"] == ["notes"]
    np.testing.assert_array_equal(ds.terminals[:3], [0, 0, 0])
    np.testing.assert_array_equal(ds.timeouts[:3], [1, 0, 1])  # closed as a truncation
    np.testing.assert_array_equal(ds.episode_ends[:2], [0, 2])


def test_minari_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="^path: no Minari HDF5 data"):
        load_minari(tmp_path)
    root = write_minari(tmp_path / "bad")
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_3/observations"]
        f.create_dataset("episode_3/observations", data=np.zeros((5, 2), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"^episode_3/observations: expected 2 rows"):
        load_minari(root)
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_3/rewards"]
    with pytest.raises(DatasetError, match="^episode_3/rewards: missing"):
        load_minari(root)
    other = write_minari(tmp_path / "arrow", metadata_json=True)
    meta = json.loads((other / "data" / "metadata.json").read_text())
    (other / "data" / "metadata.json").write_text(json.dumps({**meta, "data_format": "arrow"}))
    with pytest.raises(DatasetError, match="^data_format: Minari back end 'arrow'"):
        load_minari(other)
    empty = tmp_path / "empty" / "data"
    empty.mkdir(parents=True)
    with h5py.File(empty / "main_data.hdf5", "w") as f:
        f.attrs["total_episodes"] = 0
    with pytest.raises(DatasetError, match="^episodes: no episode_<i> groups"):
        load_minari(empty.parent)


# ====================================================================== round trips
def _dataset(discrete: bool = False, uint8: bool = False) -> Dataset:
    """Three episodes (terminal, timeout, final row unflagged) with a contiguous chain."""
    rng = np.random.default_rng(0)
    n = 9
    if uint8:
        obs = rng.integers(0, 256, size=(n + 1, 3, 4), dtype=np.uint8)
    else:
        obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    actions = rng.integers(0, 4, size=n) if discrete else rng.uniform(-1, 1, size=(n, 2))
    return Dataset.from_arrays(
        observations=obs[:-1],
        actions=actions,
        rewards=rng.normal(size=n),
        next_observations=obs[1:].copy(),  # not a view: tests edit one without the other
        terminals=[0, 0, 1, 0, 0, 0, 0, 0, 0],
        timeouts=[0, 0, 0, 0, 0, 1, 0, 0, 0],
        env_id="Toy-v0",
        metadata={
            "behaviour": "random",
            "dropped_steps": 3,
            "nested": {"a": [1, 2.5, "x"], "b": None},
            "unicode": "épisode",
        },
    )


def _assert_same_arrays(a: Dataset, b: Dataset) -> None:
    for name, value in a.arrays().items():
        other = getattr(b, name)
        assert other.dtype == value.dtype, name
        assert other.shape == value.shape, name
        np.testing.assert_array_equal(other, value, err_msg=name)


@pytest.mark.parametrize(("discrete", "uint8"), [(False, False), (True, False), (True, True)])
def test_npz_round_trip_exact(tmp_path: Path, discrete: bool, uint8: bool) -> None:
    ds = _dataset(discrete=discrete, uint8=uint8)
    path = save_npz(ds, tmp_path / "d.npz")
    assert path == tmp_path / "d.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # no temp file left
    back = load_npz(path)
    _assert_same_arrays(ds, back)
    assert back.env_id == "Toy-v0"
    assert back.metadata == ds.metadata
    with np.load(path, allow_pickle=False) as raw:  # no pickled object inside
        assert raw["offrl_header"].dtype == np.uint8
    save_npz(_dataset(), path)  # overwriting is fine
    assert load_npz(path, env_id="Other-v0").env_id == "Other-v0"


def test_npz_errors(tmp_path: Path) -> None:
    ds = _dataset()
    ds.metadata["bad"] = object()
    with pytest.raises(DatasetError, match="^metadata: value of 'bad'"):
        save_npz(ds, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []  # nothing written
    ds.metadata["bad"] = np.float32(1.5)  # numpy scalars are converted
    assert load_npz(save_npz(ds, tmp_path / "y.npz")).metadata["bad"] == 1.5
    arrays = {k: v for k, v in _dataset().arrays().items() if k != "rewards"}
    header = np.frombuffer(json.dumps({"version": 1, "metadata": {}}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "missing.npz", **arrays, offrl_header=header)
    with pytest.raises(DatasetError, match="^rewards: array missing"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="^path: cannot read"):
        load_npz(tmp_path / "junk.npz")


def test_plain_npz(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "plain.npz",
        observations=D4RL_OBS,
        actions=D4RL_ACT,
        rewards=D4RL_REW,
        terminals=D4RL_TERM,
        timeouts=D4RL_TOUT,
        extra=np.zeros(3),
    )
    ds = load_npz(tmp_path / "plain.npz")
    assert len(ds) == 4 and ds.metadata["dropped_steps"] == 2  # same rule as D4RL
    assert ds.metadata["format"] == "npz"
    assert ds.metadata["ignored_keys"] == ["extra"]


def test_d4rl_round_trip(tmp_path: Path) -> None:
    ds = _dataset()
    path = save_d4rl_hdf5(ds, tmp_path / "d.hdf5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5"]
    with h5py.File(path, "r") as f:  # the plain D4RL layout
        assert {"observations", "actions", "rewards", "next_observations"} <= set(f)
        assert {"terminals", "timeouts", "metadata"} <= set(f)
        assert f["metadata"].attrs["env_id"] == "Toy-v0"
        assert f["metadata"].attrs["behaviour"] == "random"
        assert f["terminals"].dtype == bool
    back = load_d4rl_hdf5(path)
    _assert_same_arrays(ds, back)
    assert back.env_id == "Toy-v0"
    assert back.metadata == {**ds.metadata, "source": str(path), "format": "d4rl-hdf5"}


def test_d4rl_round_trip_of_integer_actions_and_frames(tmp_path: Path) -> None:
    """D4RL's layout with discrete actions (``int64 [N]``) and ``uint8`` image observations:
    what the second seed's discrete datasets are when written as D4RL-style HDF5."""
    ds = _dataset(discrete=True, uint8=True)
    back = load_d4rl_hdf5(save_d4rl_hdf5(ds, tmp_path / "d.hdf5"))
    _assert_same_arrays(ds, back)
    assert back.actions.dtype == np.int64 and back.observations.dtype == np.uint8


def test_minari_round_trip(tmp_path: Path) -> None:
    ds = _dataset(discrete=True)
    ds.timeouts[-1] = True  # the final episode ends flagged, so the round trip is exact
    root = save_minari(ds, tmp_path / "toy-v0")
    assert root == tmp_path / "toy-v0"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["main_data.hdf5", "metadata.json"]
    with h5py.File(root / "data" / "main_data.hdf5", "r") as f:
        assert sorted(f) == ["episode_0", "episode_1", "episode_2"]
        assert f.attrs["total_episodes"] == 3 and f.attrs["total_steps"] == 9
        assert json.loads(f.attrs["env_spec"])["id"] == "Toy-v0"
        assert f["episode_1/observations"].shape == (4, 3)  # T + 1
        np.testing.assert_array_equal(f["episode_1/truncations"][()], [0, 0, 1])
        np.testing.assert_array_equal(f["episode_0/terminations"][()], [0, 0, 1])
    meta_json = json.loads((root / "data" / "metadata.json").read_text())
    assert meta_json["data_format"] == "hdf5" and meta_json["dataset_id"] == "toy-v0"
    assert json.loads(meta_json["action_space"]) == {
        "type": "Discrete",
        "dtype": "int64",
        "start": 0,
        "n": ds.action_dim,
    }
    back = load_minari(root)
    _assert_same_arrays(ds, back)
    assert back.env_id == "Toy-v0"
    for key, value in ds.metadata.items():
        assert back.metadata[key] == value
    # saving what was loaded from Minari keeps its dataset id and env_spec
    again = load_minari(save_minari(back, tmp_path / "copy"))
    assert again.metadata["dataset_id"] == "toy-v0"


def test_minari_round_trip_of_loaded_minari(tmp_path: Path) -> None:
    ds = load_minari(write_minari(tmp_path / "src"))
    back = load_minari(save_minari(ds, tmp_path / "dst"))
    _assert_same_arrays(ds, back)
    assert back.env_id == "PointMaze_UMaze-v3"
    assert back.metadata["dataset_id"] == "test/point-v0"


def test_minari_save_unflagged_final_row_becomes_truncation(tmp_path: Path) -> None:
    ds = _dataset()
    back = load_minari(save_minari(ds, tmp_path / "m"))
    np.testing.assert_array_equal(back.timeouts, [0, 0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(back.observations, ds.observations)


def test_minari_save_rejects_broken_chain(tmp_path: Path) -> None:
    ds = _dataset()
    ds.next_observations[3] += 1.0  # row 3 is inside episode 1
    with pytest.raises(DatasetError, match=r"^next_observations: row 3 \(episode 1\)"):
        save_minari(ds, tmp_path / "m")


# ====================================================================== dispatch
@pytest.fixture
def fake_builtin(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """The only dataset name resolver is a fake knowing ``"toy"`` (see offrl.data.registry)."""
    toy = _dataset()

    def make_builtin(name: str) -> Dataset:
        if name != "toy":
            raise KeyError(f"unknown dataset {name!r}; known: ['toy']")
        return toy

    monkeypatch.setattr(registry, "_RESOLVERS", [make_builtin])
    return toy


def test_load_dataset_without_resolvers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_RESOLVERS", [])
    with pytest.raises(DatasetError, match="^name_or_path: 'toy' is not an existing file"):
        load_dataset("toy")


def test_registered_resolvers_are_tried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = _dataset()

    def first(name: str) -> Dataset:
        raise KeyError("first knows nothing")

    def second(name: str) -> Dataset:
        if name != "toy":
            raise KeyError("second knows 'toy'")
        return toy

    monkeypatch.setattr(registry, "_RESOLVERS", [])
    assert registry.register_dataset_resolver(first) is first
    registry.register_dataset_resolver(second)
    registry.register_dataset_resolver(first)  # idempotent
    assert registry.dataset_resolvers() == (first, second)
    assert load_dataset("toy") is toy
    with pytest.raises(DatasetError, match="first knows nothing; second knows 'toy'"):
        load_dataset("nope")


def test_builtin_names_are_registered() -> None:
    """``import offrl`` (run before any ``offrl.*`` import) registers offrl.suite's resolver."""
    from offrl.suite.builtin import make_builtin

    assert make_builtin in registry.dataset_resolvers()


def test_load_dataset_dispatch(tmp_path: Path, fake_builtin: Dataset) -> None:
    ds = _dataset()
    ds.timeouts[-1] = True  # exact round trips in every format (Minari flags every end)
    npz = save_dataset(ds, tmp_path / "a.npz")
    h5 = save_dataset(ds, tmp_path / "b.h5")
    hdf5 = save_dataset(ds, tmp_path / "c.hdf5", format="d4rl")
    mdir = save_dataset(ds, tmp_path / "minari_dir")
    assert mdir.is_dir()
    assert load_dataset(npz).metadata == ds.metadata
    assert load_dataset(str(h5)).metadata["format"] == "d4rl-hdf5"
    assert load_dataset(hdf5).metadata["format"] == "d4rl-hdf5"
    assert load_dataset(mdir).metadata["format"] == "minari"
    # a Minari main_data.hdf5 file is recognised by its episode groups
    assert load_dataset(mdir / "data" / "main_data.hdf5").metadata["format"] == "minari"
    for path in (npz, h5, hdf5, mdir):
        _assert_same_arrays(ds, load_dataset(path))
    assert load_dataset(npz, env_id="X-v0").env_id == "X-v0"
    assert load_dataset("toy") is fake_builtin
    with pytest.raises(DatasetError, match="^name_or_path: 'nope' is neither") as info:
        load_dataset("nope")
    assert "known: ['toy']" in str(info.value)
    (tmp_path / "data.txt").write_text("1,2")
    with pytest.raises(DatasetError, match="^path: unknown dataset file type '.txt'"):
        load_dataset(tmp_path / "data.txt")


def test_save_dataset_formats(tmp_path: Path) -> None:
    ds = _dataset()
    assert load_npz(save_dataset(ds, tmp_path / "x.bin", format="npz")).env_id == "Toy-v0"
    assert load_minari(save_dataset(ds, tmp_path / "y.npz", format="minari")).env_id == "Toy-v0"
    with pytest.raises(DatasetError, match="^format: cannot infer"):
        save_dataset(ds, tmp_path / "x.csv")
    with pytest.raises(DatasetError, match="^format: unknown format 'parquet'"):
        save_dataset(ds, tmp_path / "x.npz", format="parquet")


def test_saved_files_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = save_npz(_dataset(), tmp_path / "p.npz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
