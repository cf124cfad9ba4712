"""The dataset factory (D4RL protocol) on a small MuJoCo task, and the online loop behind it.

InvertedPendulum-v5 is the small environment: MuJoCo like the benchmark tasks, 1000-step time
limit, and true terminations when the pole falls, so both ends of an episode occur.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _devices import DEVICES

from offrl.cli import main
from offrl.data import Dataset, load_dataset
from offrl.data.replay import ReplayBuffer
from offrl.suite import factory
from offrl.suite.factory import BehaviourPack, build_level, export_pack, load_pack
from offrl.train.online import OnlineConfig, train_online

ENV = "InvertedPendulum-v5"
N = 3000  # transitions per policy level in these tests


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short SAC run with snapshots (small networks: the protocol, not the policy, is tested)."""
    out = tmp_path_factory.mktemp("online") / "run"
    cfg = OnlineConfig(
        env_id=ENV,
        steps=1500,
        start_steps=500,
        snapshot_every=500,
        eval_every=500,
        eval_episodes=2,
        checkpoint_every=500,
        buffer_size=5000,
        out=str(out),
        progress=False,
        algo_config={"hidden": (32, 32), "batch_size": 64},
    )
    train_online(cfg)
    return out


@pytest.fixture(scope="module")
def pack(run_dir: Path) -> BehaviourPack:
    return export_pack(run_dir, episodes=2)


def _flags_ok(ds: Dataset) -> None:
    """Every episode ends in exactly one flag; terminals and timeouts never coincide."""
    assert not (ds.terminals & ds.timeouts).any()
    ends = ds.terminals | ds.timeouts
    assert ends[-1]
    lengths = np.diff(np.r_[-1, np.flatnonzero(ends)])
    assert lengths.max() <= 1000


def test_pack_levels_and_roundtrip(pack: BehaviourPack, tmp_path: Path) -> None:
    assert sorted(pack.snapshots) == [500, 1000, 1500]
    assert pack.expert_step in (1500,) and pack.medium_step < pack.expert_step
    assert set(pack.returns) == {"random", "medium", "expert"}
    path = pack.save(tmp_path / "pack.pt")
    loaded = load_pack(path)  # weights_only: no code runs
    x = torch.randn(7, 4)
    for step in (None, pack.medium_step, 500):
        a, b = pack.actor(step), loaded.actor(step)
        assert torch.equal(a(x), b(x))
    # float16 replay snapshots, float32 levels
    (other,) = set(pack.snapshots) - {pack.medium_step, pack.expert_step}
    assert loaded.snapshots[other]["net.flat"].dtype == torch.float16
    assert loaded.snapshots[pack.expert_step]["net.flat"].dtype == torch.float32


def test_policy_levels_sizes_and_flags(pack: BehaviourPack) -> None:
    sizes = {}
    for level in ("random", "medium", "expert"):
        ds = build_level(pack, level, transitions=N, num_envs=4)
        assert len(ds) == N
        _flags_ok(ds)
        sizes[level] = ds.stats().num_episodes
        assert ds.metadata["level"] == level
        assert ds.metadata["behaviour_return_mean"] == pytest.approx(ds.stats().return_mean)
    # The random policy drops the pole within a few steps: many terminated episodes.
    rnd = build_level(pack, "random", transitions=N, num_envs=4)
    assert rnd.terminals.sum() > 50
    # Episodes still running at the budget end as truncations, one per environment at most.
    assert 1 <= rnd.timeouts.sum() <= 4


def test_medium_expert_is_the_concatenation(pack: BehaviourPack) -> None:
    me = build_level(pack, "medium-expert", transitions=N, seed=3, num_envs=4)
    medium = build_level(pack, "medium", transitions=N, seed=3, num_envs=4)
    expert = build_level(pack, "expert", transitions=N, seed=4, num_envs=4)
    assert len(me) == 2 * N
    for name, arr in me.arrays().items():
        assert np.array_equal(arr, np.concatenate([medium.arrays()[name], expert.arrays()[name]]))


def test_same_seed_same_build(pack: BehaviourPack) -> None:
    a = build_level(pack, "medium", transitions=N, seed=5, num_envs=4)
    b = build_level(pack, "medium", transitions=N, seed=5, num_envs=4)
    c = build_level(pack, "medium", transitions=N, seed=6, num_envs=4)
    for name in a.arrays():
        assert np.array_equal(a.arrays()[name], b.arrays()[name])
    assert not np.array_equal(a.actions, c.actions)


def test_large_levels_build_in_two_processes_deterministically(
    pack: BehaviourPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``SHARD_MIN`` a level is two parts from two worker processes: exact size, valid
    flags, the same for the same seed, and different from the one-process build."""
    single = build_level(pack, "medium", transitions=N, seed=5, num_envs=4)
    monkeypatch.setattr(factory, "SHARD_MIN", 1000)
    a = build_level(pack, "medium", transitions=N + 1, seed=5, num_envs=4)
    b = build_level(pack, "medium", transitions=N + 1, seed=5, num_envs=4)
    assert len(a) == N + 1
    _flags_ok(a)
    for name in a.arrays():
        assert np.array_equal(a.arrays()[name], b.arrays()[name]), name
    assert not np.array_equal(a.actions[:N], single.actions)


def test_real_replay_is_the_buffer_in_order(pack: BehaviourPack, run_dir: Path) -> None:
    from offrl.train.checkpoint import load_checkpoint

    mr = build_level(pack, "medium-replay", run_dir=run_dir)
    full = build_level(pack, "full-replay", run_dir=run_dir)
    assert len(mr) == pack.medium_step and len(full) == pack.train_steps == 1500
    assert mr.metadata["replay"] == "real"
    _flags_ok(full)
    # One environment: the buffer is already episode-contiguous, so order is kept exactly.
    buf = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["buffer"]
    assert np.array_equal(full.observations, buf["obs"].numpy()[:1500])
    assert np.array_equal(mr.actions, buf["actions"].numpy()[: pack.medium_step])
    # The first start_steps actions were uniform over the box, later ones the policy's.
    assert np.abs(full.actions[:500]).max() <= 3.0


def test_pack_carries_the_real_medium_replay(
    pack: BehaviourPack, run_dir: Path, tmp_path: Path
) -> None:
    """medium-replay from a shipped pack is the run's buffer exactly, with no run at hand."""
    real = build_level(pack, "medium-replay", run_dir=run_dir)
    loaded = load_pack(pack.save(tmp_path / "pack.pt"))
    assert loaded.replay is not None
    # Next observations are stored only where the following row does not hold them.
    ends = int((real.terminals | real.timeouts).sum())
    assert len(loaded.replay["next_observations"]) <= ends + 1 < len(real)
    from_pack = build_level(loaded, "medium-replay")
    assert from_pack.metadata["replay"] == "real"
    for field in ("observations", "actions", "rewards", "next_observations"):
        assert np.array_equal(getattr(from_pack, field), getattr(real, field)), field
    assert np.array_equal(from_pack.terminals, real.terminals)
    assert np.array_equal(from_pack.timeouts, real.timeouts)


def test_reconstructed_replay(pack: BehaviourPack) -> None:
    without_buffer = dataclasses.replace(pack, replay=None)
    mr = build_level(without_buffer, "medium-replay", num_envs=4)
    full = build_level(pack, "full-replay", num_envs=4)
    assert mr.metadata["replay"] == full.metadata["replay"] == "reconstructed"
    assert len(mr) == pack.medium_step and len(full) == pack.train_steps
    _flags_ok(full)
    # The warm-up part is uniform random actions over [-3, 3]: spread out, unlike a policy.
    assert full.actions[:500].std() > 1.3


def test_hdf5_output_with_metadata(pack: BehaviourPack, tmp_path: Path) -> None:
    pack_path = pack.save(tmp_path / "pack.pt")
    out = tmp_path / "expert.hdf5"
    args = ["dataset", "make", "--pack", str(pack_path), "--level", "expert", "--out", str(out)]
    assert main([*args, "--transitions", "2000", "--num-envs", "4"]) == 0
    import h5py

    with h5py.File(out, "r") as f:  # the D4RL layout, readable without offrl
        assert {"observations", "actions", "rewards", "terminals", "timeouts"} <= set(f)
        assert f["observations"].shape == (2000, 4)
    ds = load_dataset(out)
    assert ds.env_id == ENV
    meta = ds.metadata
    assert meta["level"] == "expert" and meta["seed"] == 0
    assert "not D4RL" in meta["provenance"]
    for key in ("behaviour_return_mean", "offrl_version", "gymnasium_version", "pack_seed"):
        assert key in meta, key


def test_subsample_episodes(pack: BehaviourPack, tmp_path: Path) -> None:
    ds = build_level(pack, "random", transitions=N, num_envs=4)
    n = ds.stats().num_episodes
    sub = ds.subsample_episodes(0.1, seed=0)
    assert sub.stats().num_episodes == max(1, round(0.1 * n))
    _flags_ok(sub)
    again = ds.subsample_episodes(0.1, seed=0)
    assert np.array_equal(sub.observations, again.observations)
    other = ds.subsample_episodes(0.1, seed=1)
    assert not np.array_equal(sub.observations, other.observations)
    # Whole episodes only: every kept episode's return is one of the original returns.
    assert set(np.round(sub.episode_returns(), 4)) <= set(np.round(ds.episode_returns(), 4))


# ---------------------------------------------------------------------- replay buffer
def _buffer(capacity: int = 10) -> ReplayBuffer:
    return ReplayBuffer(capacity, (2,), 1, np.array([-2.0]), np.array([2.0]))


def _add(buf: ReplayBuffer, start: int, n: int, episode: list[int], done_last: bool) -> None:
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)
    terminals = np.zeros(n, dtype=bool)
    terminals[-1] = done_last
    buf.add(
        obs,
        np.full((n, 1), 2.0),
        np.ones(n),
        obs + 1,
        terminals,
        np.zeros(n, bool),
        np.array(episode),
    )


def test_replay_buffer_interleaved_episodes_become_contiguous() -> None:
    buf = _buffer()
    # Two environments interleaved: episode 0 (env 0) and episode 1 (env 1).
    for t in range(3):
        _add(buf, 10 * 0 + t, 1, [0], done_last=t == 2)
        _add(buf, 10 * 1 + t, 1, [1], done_last=False)
    ds = buf.to_dataset()
    assert ds.observations[:, 0].tolist() == [0, 1, 2, 10, 11, 12]
    assert ds.terminals.tolist() == [False, False, True, False, False, False]
    # Episode 1 was still running: it is stored as truncated.
    assert ds.timeouts.tolist() == [False] * 5 + [True]
    batch = buf.sample(4, torch.Generator().manual_seed(0))
    assert torch.all(batch.actions == 1.0)  # 2.0 in [-2, 2] is the top of the unit box


def test_replay_buffer_wraps_and_restores() -> None:
    buf = _buffer(capacity=4)
    _add(buf, 0, 6, [0] * 6, done_last=True)
    assert len(buf) == 4 and buf.total == 6
    assert buf.to_dataset().observations[:, 0].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="wrapped"):
        buf.to_dataset(first=2)
    other = _buffer(capacity=4)
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.to_dataset().observations, buf.to_dataset().observations)


# ---------------------------------------------------------------------- online SAC and TQC
@pytest.mark.parametrize(
    ("algo", "options"),
    [("sac", {}), ("tqc", {"num_critics": 2, "critic_hidden": (256, 256)})],  # SB3-contrib's TQC
)
def test_learns_pendulum_online(tmp_path: Path, algo: str, options: dict[str, object]) -> None:
    """SAC and TQC swing Pendulum up within a small budget (random policy: about -1200)."""
    final = train_online(
        OnlineConfig(
            algo=algo,
            algo_config=options,
            env_id="Pendulum-v1",
            steps=4000,
            start_steps=1000,
            eval_every=0,
            snapshot_every=0,
            eval_episodes=5,
            buffer_size=4000,
            out=str(tmp_path / algo),
            progress=False,
        )
    )
    # Observed: SAC -128, TQC -129 (seed 0, 5 episodes); 3000 steps with (64, 64) networks was
    # not enough for SAC.
    assert final["return_mean"] > -500, final


@pytest.mark.parametrize("saved_env", [True, False], ids=["env-saved", "env-unsaveable"])
@pytest.mark.parametrize("device", DEVICES)
def test_online_resume_continues(
    tmp_path: Path, device: str, saved_env: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the simulator saved, the episode in flight goes on; for an environment whose state
    cannot be saved, it ends as a truncation and the environments are re-seeded."""
    if not saved_env:
        import sys  # (``offrl.train`` the attribute is the function; the module is in sys.modules)

        monkeypatch.setattr(sys.modules["offrl.train.online"], "save_env_state", lambda e: None)
    base = dict(
        env_id="Pendulum-v1",
        device=device,
        start_steps=100,
        eval_every=0,
        snapshot_every=0,
        checkpoint_every=150,
        eval_episodes=1,
        buffer_size=1000,
        out=str(tmp_path / "run"),
        progress=False,
        algo_config={"hidden": (16, 16), "batch_size": 32},
    )
    train_online(OnlineConfig(steps=300, **base))  # type: ignore[arg-type]
    with pytest.raises(FileExistsError):
        train_online(OnlineConfig(steps=450, **base))  # type: ignore[arg-type]
    train_online(OnlineConfig(steps=450, **base), resume=True, allow_changes=["steps"])  # type: ignore[arg-type]
    from offrl.train.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == 450 and state["restarts"] == int(not saved_env)
    assert state["algo"]["num_updates"] == 450 - 99  # from the 100th transition on
    assert state["buffer"]["size"] == 450
    # Pendulum's episodes are 200 steps long: the one in flight at step 300 went on, or was cut.
    assert bool(state["buffer"]["timeouts"][299]) == (not saved_env)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [300, 450]


def test_trainer_data_fraction(tmp_path: Path) -> None:
    """``--data-fraction 0.1`` trains on 10 of pendulum-medium-v0's 100 episodes."""
    args = ["train", "--algo", "bc", "--dataset", "pendulum-medium-v0", "--steps", "20"]
    args += ["--data-fraction", "0.1", "--data-seed", "3", "--out", str(tmp_path / "r")]
    assert main([*args, "--eval-episodes", "1", "--no-progress"]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["dataset"]["episodes"] == 10
    assert config["dataset"]["transitions"] == 2000
    assert config["dataset"]["metadata"]["subsample_seed"] == 3


def test_every_registered_mujoco_dataset_has_its_pack_shipped() -> None:
    """Each registered name's pack is package data, reads as a pack of that environment, and
    each (environment, version) has its own pack: a retrained pack never takes over an old
    name (``walker2d-*-v0`` keeps the first Walker2d run)."""
    versions: dict[str, set[str]] = {}
    for name, (_, pack_file, level) in factory.MUJOCO_DATASETS.items():
        short, version = name.split("-")[0], name.rsplit("-", 1)[1]
        assert name == f"{short}-{level}-{version}"
        assert (factory.PACK_DIR / pack_file).exists(), name
        versions.setdefault(pack_file, set()).add(f"{short}-{version}")
    assert all(len(v) == 1 for v in versions.values()), versions
    for pack_file in versions:
        pack = load_pack(factory.PACK_DIR / pack_file)
        assert pack.env_id in {e for e, f, _ in factory.MUJOCO_DATASETS.values() if f == pack_file}
    assert factory.MUJOCO_DATASETS["walker2d-medium-v0"][1] == "walker2d-v5.pt"
