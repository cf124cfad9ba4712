"""d3rlpy's own dataset files (``ReplayBuffer.dump`` / ``MDPDataset.dump``) read by offrl.

offrl must hold exactly the transitions d3rlpy samples from the same file: d3rlpy 2.8.1 writes
the files and reports what it reads back (``benchmarks/d3rlpy/dump_dataset.py``, run in d3rlpy's
virtual environment, which CI builds). ``tests/data/d3rlpy_small.h5`` is one such file with
d3rlpy's report beside it, so the loader is tested where that environment is absent too."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from _d3rlpy import D3RLPY_PYTHON, ROOT, needs_d3rlpy

from offrl.data import (
    Dataset,
    DatasetError,
    load_d3rlpy,
    load_dataset,
    save_d4rl_hdf5,
    save_minari,
)

DATA = Path(__file__).resolve().parent / "data"
SMALL = DATA / "d3rlpy_small.h5"
SCRIPT = ROOT / "benchmarks" / "d3rlpy" / "dump_dataset.py"


def assert_matches_d3rlpy(ds: Dataset, report: dict[str, Any]) -> None:
    """``ds`` holds the transitions, episodes, returns and end flags d3rlpy reported."""
    episodes = [e for e in report["episodes"] if e["transition_count"] > 0]
    lengths = ds.episode_ends - ds.episode_starts + 1
    assert lengths.tolist() == [e["transition_count"] for e in episodes]
    assert len(ds) == report["transition_count"]
    np.testing.assert_allclose(
        ds.episode_returns(), [e["transition_return"] for e in episodes], rtol=1e-6, atol=1e-6
    )
    ends = ds.episode_ends
    assert ds.terminals[ends].tolist() == [e["terminated"] for e in episodes]
    assert ds.timeouts[ends].tolist() == [not e["terminated"] for e in episodes]
    assert int(ds.terminals.sum() + ds.timeouts.sum()) == len(episodes)  # flags only at ends
    dropped = sum(e["size"] - e["transition_count"] for e in report["episodes"])
    assert ds.metadata["dropped_steps"] == dropped
    assert ds.discrete == (report["action_space"] == "discrete")
    t = report["transitions"]
    obs = np.asarray(t["observations"], dtype=ds.observations.dtype)
    np.testing.assert_array_equal(ds.observations, obs)
    np.testing.assert_array_equal(ds.actions, np.asarray(t["actions"]).reshape(ds.actions.shape))
    np.testing.assert_array_equal(ds.rewards, np.asarray(t["rewards"], dtype=np.float32))
    np.testing.assert_array_equal(ds.terminals, t["terminals"])
    # d3rlpy puts zeros after a terminal (never used); everywhere else the successors agree.
    nxt = np.asarray(t["next_observations"], dtype=ds.observations.dtype)
    live = ~ds.terminals
    np.testing.assert_array_equal(ds.next_observations[live], nxt[live])
    if ds.discrete:
        assert ds.action_dim <= report["action_size"]
    else:
        assert ds.action_dim == report["action_size"]


# ====================================================================== files d3rlpy wrote
def test_committed_file_matches_d3rlpy_report() -> None:
    report = json.loads(SMALL.with_suffix(".json").read_text())
    assert report["library"] == "d3rlpy 2.8.1"
    ds = load_dataset(SMALL)
    assert ds.metadata["format"] == "d3rlpy"
    assert_matches_d3rlpy(ds, report)


def test_committed_file_by_hand() -> None:
    """The ``continuous`` case of dump_dataset.py: rewards ``(arange(16) - 5) / 4`` over episodes
    of 4 (terminal), 3 (timeout), 1 (terminal), 1 (timeout), 5 (timeout), 2 (terminal) steps."""
    ds = load_d3rlpy(SMALL, env_id="Toy-v0")
    assert ds.env_id == "Toy-v0"
    # d3rlpy stored 5 episodes: the 1-step timeout has no transition, so its buffer kept none.
    assert ds.metadata["d3rlpy_episodes"] == 5
    assert ds.metadata["d3rlpy_dataset_version"] == "2.1"
    assert ds.metadata["action_space"] == "continuous"
    # A timed-out episode loses its last step (no successor): 4, 3-1, 1, 5-1, 2.
    assert (ds.episode_ends - ds.episode_starts + 1).tolist() == [4, 2, 1, 4, 2]
    assert ds.metadata["dropped_steps"] == 2
    r = (np.arange(16) - 5) / 4
    expected = [r[0:4].sum(), r[4:6].sum(), r[7], r[9:13].sum(), r[14:16].sum()]
    np.testing.assert_allclose(ds.episode_returns(), expected)
    assert np.flatnonzero(ds.terminals).tolist() == [3, 6, 12]
    assert np.flatnonzero(ds.timeouts).tolist() == [5, 10]
    # Inside an episode the successor is the next step's observation.
    np.testing.assert_array_equal(ds.next_observations[0:3], ds.observations[1:4])
    assert ds.observations.shape == (13, 3) and ds.actions.shape == (13, 2)


@pytest.fixture(scope="module")
def d3rlpy_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not D3RLPY_PYTHON.exists():
        pytest.skip("run benchmarks/d3rlpy/setup.sh first")
    out = tmp_path_factory.mktemp("d3rlpy_files")
    done = subprocess.run(
        [str(D3RLPY_PYTHON), str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@needs_d3rlpy
@pytest.mark.parametrize("case", ["continuous", "discrete", "v1"])
def test_files_d3rlpy_wrote_match_its_report(d3rlpy_files: Path, case: str) -> None:
    report = json.loads((d3rlpy_files / f"{case}.json").read_text())
    ds = load_dataset(d3rlpy_files / f"{case}.h5")
    assert ds.metadata["format"] == "d3rlpy"
    assert_matches_d3rlpy(ds, report)
    if case == "discrete":
        assert ds.actions.dtype == np.int64 and ds.observations.dtype == np.uint8
        assert ds.observations.shape[1:] == (1, 3, 3)
    if case == "v1":
        assert ds.metadata["d3rlpy_dataset_version"] == "1.0"
        assert ds.metadata["unended_rows"] == 2


@needs_d3rlpy
def test_committed_file_is_what_the_script_writes(d3rlpy_files: Path) -> None:
    written = json.loads((d3rlpy_files / "continuous.json").read_text())
    committed = json.loads(SMALL.with_suffix(".json").read_text())
    assert written == committed
    # The same data (not necessarily the same bytes: those depend on h5py's version).
    fresh, kept = load_dataset(d3rlpy_files / "continuous.h5"), load_dataset(SMALL)
    for name, arr in kept.arrays().items():
        np.testing.assert_array_equal(fresh.arrays()[name], arr, err_msg=name)


# ====================================================================== malformed files
def edited(tmp_path: Path, edit: Any) -> Path:
    """A copy of the committed file with ``edit(h5py.File)`` applied."""
    path = tmp_path / "edited.h5"
    shutil.copy(SMALL, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(key: str, data: Any) -> Any:
    def edit(f: Any) -> None:
        del f[key]
        f.create_dataset(key, data=data)

    return edit


def _group(f: Any) -> None:
    del f["observations_0"]
    f.create_group("observations_0")


def _tuple_obs(f: Any) -> None:
    obs = f["observations_0"][()]
    del f["observations_0"]
    f.create_dataset("observations_0_0", data=obs[:, :2])
    f.create_dataset("observations_0_1", data=obs[:, 2:])


MALFORMED = [
    (lambda f: f.__delitem__("rewards_2"), r"^rewards_2: missing from d3rlpy file"),
    (lambda f: f.__delitem__("terminated_4"), r"^terminated_4: missing"),
    (_replace("num_episodes", 7), r"^observations_5: missing from d3rlpy file .* \(7 episodes\)"),
    (_replace("num_episodes", 0), r"^num_episodes: expected a positive integer, got 0"),
    (_replace("version", "2.0"), r"^version: d3rlpy dataset version '2.0' is not supported"),
    (
        _replace("columns", [b"observations", b"actions", b"rewards"]),
        r"^columns: 'terminated' is not among",
    ),
    (
        _replace("actions_1", np.zeros((2, 2), np.float32)),
        r"^actions_1: expected shape \[3, act_dim\] \(one per observation\), got \(2, 2\)",
    ),
    (
        _replace("rewards_0", np.zeros((4, 2), np.float32)),
        r"^rewards_0: expected shape \[4\] or \[4, 1\], got \(4, 2\).*vector rewards",
    ),
    (
        _replace("observations_0", np.zeros(4, np.float32)),
        r"^observations_0: expected shape \[T, \*obs_shape\], got \(4,\)",
    ),
    (
        _replace("observations_3", np.zeros((5, 4), np.float32)),
        r"^observations_3: row shape \(4,\) differs from the first episode's \(3,\)",
    ),
    (
        _replace("observations_1", np.array([[b"a"] * 3] * 3)),
        r"^observations_1: expected numbers, got dtype \|S1",
    ),
    (
        _replace("terminated_2", np.array([True, False])),
        r"^terminated_2: expected one boolean, got shape \(2,\)",
    ),
    (_replace("terminated_2", 0.5), r"^terminated_2: expected one boolean"),
    (
        _replace("observations_2", np.full((1, 3), np.nan, np.float32)),
        r"^observations: contains NaN or inf \(first at row 6\).*edited.h5",
    ),
    (_group, r"^observations_0: expected an array, found an HDF5 group"),
    (_tuple_obs, r"^observations: tuple observations are not supported \(observations_0_0"),
]


@pytest.mark.parametrize(("edit", "message"), MALFORMED)
def test_malformed_files_name_the_field(tmp_path: Path, edit: Any, message: str) -> None:
    path = edited(tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as info:
        load_d3rlpy(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)  # still recognised as a d3rlpy file, same error


def test_not_a_d3rlpy_file(tmp_path: Path) -> None:
    path = edited(tmp_path, lambda f: f.__delitem__("columns"))
    with pytest.raises(DatasetError, match=r"^path: .* is not a d3rlpy dataset file"):
        load_d3rlpy(path)
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(SMALL.read_bytes()[:3000])
    with pytest.raises(DatasetError, match=r"^path: cannot read .*damaged.h5 as HDF5"):
        load_d3rlpy(damaged)
    data = bytearray(SMALL.read_bytes())
    data[6000:7500] = b"\xff" * 1500  # object headers of the episodes' datasets
    damaged.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"^path: .*damaged.h5 is not a readable d3rlpy"):
        load_d3rlpy(damaged)
    with pytest.raises(DatasetError, match=r"^path: file not found"):
        load_d3rlpy(tmp_path / "absent.h5")


def test_extra_entries_are_listed_not_read(tmp_path: Path) -> None:
    def edit(f: Any) -> None:
        f.create_dataset("notes", data=b"hello")
        f.create_dataset("observations_9", data=np.zeros((2, 3), np.float32))  # beyond count
        del f["columns"]
        f.create_dataset(
            "columns", data=[b"observations", b"actions", b"rewards", b"terminated", b"infos"]
        )
        f.create_dataset("infos_0", data=np.zeros(4))

    ds = load_d3rlpy(edited(tmp_path, edit))
    assert ds.metadata["ignored_keys"] == ["infos_0", "notes", "observations_9"]
    assert len(ds) == 13


# ====================================================================== discrete or continuous
def _actions(values: dict[int, np.ndarray]) -> Any:
    def edit(f: Any) -> None:
        for i, arr in values.items():
            del f[f"actions_{i}"]
            f.create_dataset(f"actions_{i}", data=arr)

    return edit


LENGTHS = [4, 3, 1, 5, 2]  # the committed file's stored episodes


def _whole_float_actions(fraction_in: int | None = None, low: int = 0) -> dict[int, np.ndarray]:
    out = {}
    for i, n in enumerate(LENGTHS):
        arr = (low + np.arange(n) % 3).astype(np.float32)[:, None]
        if i == fraction_in:
            arr[1, 0] = 0.5
        out[i] = arr
    return out


def test_whole_number_actions_are_discrete_as_in_d3rlpy(tmp_path: Path) -> None:
    ds = load_d3rlpy(edited(tmp_path, _actions(_whole_float_actions())))
    assert ds.discrete and ds.actions.dtype == np.int64 and ds.actions.shape == (13,)
    assert ds.metadata["action_space"] == "discrete"
    assert ds.actions[:4].tolist() == [0, 1, 2, 0]
    cont = load_d3rlpy(edited(tmp_path, _actions(_whole_float_actions())), discrete=False)
    assert not cont.discrete and cont.actions.shape == (13, 1)
    np.testing.assert_array_equal(cont.actions[:, 0], ds.actions.astype(np.float32))


def test_discrete_detection_disagreeing_with_later_episodes(tmp_path: Path) -> None:
    path = edited(tmp_path, _actions(_whole_float_actions(fraction_in=3)))
    with pytest.raises(
        DatasetError,
        match=r"^actions: d3rlpy would read .* as discrete .*"
        r"row 9 holds \[0.5\]; pass discrete=False",
    ):
        load_d3rlpy(path)
    assert not load_d3rlpy(path, discrete=False).discrete
    with pytest.raises(
        DatasetError,
        match=r"^actions: discrete actions must be non-negative "
        r"whole numbers, row 9 holds 0.5",
    ):
        load_d3rlpy(path, discrete=True)


def test_negative_or_multi_column_discrete_actions(tmp_path: Path) -> None:
    path = edited(tmp_path, _actions(_whole_float_actions(low=-1)))
    with pytest.raises(
        DatasetError,
        match=r"^actions: discrete actions must be non-negative.*"
        r"row 0 holds -1.0.*pass discrete=False",
    ):
        load_d3rlpy(path)
    assert load_d3rlpy(path, discrete=False).actions.min() == -1.0
    with pytest.raises(DatasetError, match=r"^actions: discrete actions need one column"):
        load_d3rlpy(SMALL, discrete=True)
    # Whole numbers in two columns: d3rlpy's rule cannot mean indices, so continuous.
    two = {i: np.ones((n, 2), np.float32) for i, n in enumerate(LENGTHS)}
    assert not load_d3rlpy(edited(tmp_path, _actions(two))).discrete


def test_integer_actions_of_shape_n(tmp_path: Path) -> None:
    ints = {i: np.arange(n, dtype=np.int64) % 2 for i, n in enumerate(LENGTHS)}
    ds = load_d3rlpy(edited(tmp_path, _actions(ints)))
    assert ds.discrete and ds.actions[:4].tolist() == [0, 1, 0, 1]


# ====================================================================== dispatch
def test_load_dataset_tells_the_hdf5_layouts_apart(tmp_path: Path) -> None:
    d3 = load_dataset(SMALL)
    d4rl = save_d4rl_hdf5(d3, tmp_path / "d4rl.h5")
    minari = save_minari(d3, tmp_path / "minari")
    assert load_dataset(d4rl).metadata["format"] == "d4rl-hdf5"
    assert load_dataset(minari / "data" / "main_data.hdf5").metadata["format"] == "minari"
    for path in (d4rl, minari):
        again = load_dataset(path)
        np.testing.assert_array_equal(again.observations, d3.observations)
        np.testing.assert_array_equal(again.terminals, d3.terminals)
        np.testing.assert_array_equal(again.timeouts, d3.timeouts)
    hdf5 = tmp_path / "same.hdf5"
    shutil.copy(SMALL, hdf5)
    assert load_dataset(hdf5, env_id="X-v0").env_id == "X-v0"
