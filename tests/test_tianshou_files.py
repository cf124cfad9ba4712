"""Tianshou 2.0.1's own replay-buffer files, read by offrl: what offrl loads is what Tianshou
itself reads back from them (``benchmarks/tianshou/write_buffers.py``, run in Tianshou's
virtual environment: ``bash benchmarks/tianshou/setup.sh``; CI builds it).

The cases: a plain buffer, a wrapped ring, continuous actions, a ``VectorReplayBuffer`` of three
wrapped sub-buffers, and the Atari recipe (``save_only_last_obs=True, stack_num=4``,
``ignore_obs_next=True``) whose frames offrl stacks as Tianshou does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from offrl.data import DatasetError, load_dataset, load_tianshou

ROOT = Path(__file__).resolve().parents[1]
TIANSHOU_PYTHON = ROOT / "benchmarks" / ".venv-tianshou" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not TIANSHOU_PYTHON.exists(), reason="run benchmarks/tianshou/setup.sh first"
)
CASES = ["plain", "wrapped", "continuous", "vector", "atari"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tianshou")
    script = ROOT / "benchmarks" / "tianshou" / "write_buffers.py"
    done = subprocess.run(
        [str(TIANSHOU_PYTHON), str(script), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


def _expected(files: Path, case: str) -> dict[str, np.ndarray]:
    """Tianshou's own reading, and which rows end an episode (Tianshou's ``done``, or the last
    row of each ring: an episode still running when the buffer was saved)."""
    theirs = dict(np.load(files / f"{case}.npz"))
    with h5py.File(files / f"{case}.hdf5") as f:
        if "_offset" in f:
            lengths = np.asarray(f["_lengths"])
            ring_end = np.zeros(lengths.sum(), dtype=bool)
            ring_end[np.cumsum(lengths) - 1] = True
        else:
            ring_end = np.zeros(len(theirs["rew"]), dtype=bool)
            ring_end[-1] = True
    theirs["ends"] = theirs["terminated"] | theirs["truncated"] | ring_end
    return theirs


@pytest.mark.parametrize("case", CASES)
def test_offrl_reads_what_tianshou_reads(files: Path, case: str) -> None:
    theirs = _expected(files, case)
    ds = load_dataset(files / f"{case}.hdf5")  # recognised as a Tianshou buffer
    assert ds.metadata["format"] == "tianshou-hdf5"
    if "obs_next" in theirs:  # every row, with Tianshou's own next observations
        keep = np.ones(len(theirs["rew"]), dtype=bool)
        assert np.array_equal(ds.next_observations, theirs["obs_next"])
    else:  # next observation = the next row's; an episode's truncated last row has none
        keep = ~(theirs["ends"] & ~theirs["terminated"])
        assert ds.metadata["dropped_steps"] == int((~keep).sum()) > 0
        # A row that does not end its episode: its successor is the next stored row.
        rows = np.flatnonzero(keep)
        inner = ~theirs["ends"][rows]
        assert np.array_equal(ds.next_observations[inner], theirs["obs"][rows[inner] + 1])
    assert np.array_equal(ds.observations, theirs["obs"][keep])
    assert ds.observations.dtype == (np.uint8 if case == "atari" else np.float32)
    act = theirs["act"][keep]
    if case == "continuous":
        assert ds.actions.dtype == np.float32 and np.array_equal(ds.actions, act)
    else:
        assert ds.discrete and ds.actions.dtype == np.int64 and np.array_equal(ds.actions, act)
    assert np.allclose(ds.rewards, theirs["rew"][keep].astype(np.float32))
    assert np.array_equal(ds.terminals, theirs["terminated"][keep])
    # Episode ends: Tianshou's, and a row whose truncated successor was dropped.
    ends = theirs["ends"].copy()
    dropped = np.flatnonzero(~keep)
    ends[dropped[dropped > 0] - 1] = True
    assert np.array_equal(ds.terminals | ds.timeouts, ends[keep])


def test_a_wrapped_ring_starts_at_its_oldest_row(files: Path) -> None:
    ds = load_tianshou(files / "wrapped.hdf5")
    with h5py.File(files / "wrapped.hdf5") as f:
        oldest = int(f.attrs["_insertion_idx"])
        assert int(f.attrs["_size"]) == int(f.attrs["maxsize"])  # the ring is full
        stored = np.asarray(f["_meta/obs"])
    assert oldest > 0 and np.array_equal(ds.observations[0], stored[oldest])
    assert ds.metadata["tianshou_wrapped_rings"] == 1


def test_frames_are_stacked_as_tianshou_stacks_them(files: Path) -> None:
    """The Atari recipe stores one frame per row; each observation is the episode's 4 latest
    frames, the first repeated before the episode began (Tianshou's ``prev``)."""
    ds = load_tianshou(files / "atari.hdf5")
    assert ds.observations.shape[1:] == (4, 6, 6)
    first = ds.observations[0]
    assert all(np.array_equal(first[i], first[3]) for i in range(3))  # a ring's oldest row
    assert ds.metadata["tianshou_stack_num"] == 4


def test_frame_storage_reads_the_same_transitions(files: Path) -> None:
    """``frames=True`` keeps each frame once; its stacks and next stacks are the stacked
    reading's, row for row."""
    stacked = load_tianshou(files / "atari.hdf5")
    frames = load_tianshou(files / "atari.hdf5", frames=True)
    assert len(frames) == len(stacked) and frames.obs_shape == (4, 6, 6)
    # One frame a step (a dropped step's is its predecessor's successor), plus per episode 3
    # pads and a terminal's successor.
    bound = len(frames) + frames.metadata["dropped_steps"] + 4 * frames.stats().num_episodes
    assert frames.frames.shape[0] <= bound
    again = frames.to_dataset()
    for name in ("observations", "actions", "rewards", "terminals"):
        assert np.array_equal(getattr(again, name), getattr(stacked, name)), name
    # Next observations wherever they are used (a terminal's never is: each reading puts a
    # placeholder there).
    live = ~stacked.terminals
    assert np.array_equal(again.next_observations[live], stacked.next_observations[live])
    assert np.array_equal(again.terminals | again.timeouts, stacked.terminals | stacked.timeouts)
    with pytest.raises(DatasetError, match="^_meta/obs: frames=True"):
        load_tianshou(files / "plain.hdf5", frames=True)


def test_broken_buffers_are_refused_by_name(files: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hdf5"
    with h5py.File(files / "plain.hdf5") as src, h5py.File(bad, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for key in ("obs", "rew", "terminated", "truncated"):  # no act
            dst.create_dataset(f"_meta/{key}", data=src[f"_meta/{key}"][()])
    with pytest.raises(DatasetError, match="_meta/act"):
        load_dataset(bad)
    with h5py.File(bad, "a") as f:
        f.create_dataset("_meta/act", data=np.zeros(5, dtype=np.int64))  # too short
    with pytest.raises(DatasetError, match="_meta/act: 5 rows"):
        load_tianshou(bad)
    with h5py.File(bad, "a") as f:
        del f["_meta/act"]
        f.create_dataset("_meta/act", data=-np.ones(len(f["_meta/obs"]), dtype=np.int64))
    with pytest.raises(DatasetError, match="non-negative"):
        load_tianshou(bad)
