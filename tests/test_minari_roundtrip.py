"""Minari both ways, with the real ``minari`` library: any offrl dataset exported as a Minari
dataset that ``minari`` opens, lists and recovers the environment of, loading back identical;
and a dataset ``minari`` itself collected, found by its id under Minari's local directory
(``--dataset namespace/name-vN``), with no network."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from offrl.cli import main
from offrl.data import DatasetError, load_dataset
from offrl.data.loaders import export_minari, minari_datasets_dir

minari = pytest.importorskip("minari")
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


@pytest.fixture(autouse=True)
def _local_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_an_offrl_dataset_exported_opens_in_minari_and_loads_back_identical(
    _local_minari: Path,
) -> None:
    ours = load_dataset("pendulum-medium-v0")
    where = export_minari(ours, "offrl/pendulum/medium-v0")
    assert where == _local_minari / "offrl" / "pendulum" / "medium-v0"
    assert "offrl/pendulum/medium-v0" in minari.list_local_datasets()
    theirs = minari.load_dataset("offrl/pendulum/medium-v0")
    assert theirs.total_episodes == ours.stats().num_episodes
    assert theirs.total_steps == len(ours)
    env = gym.make("Pendulum-v1")
    assert theirs.observation_space == env.observation_space
    assert theirs.action_space == env.action_space
    assert theirs.recover_environment().spec.id == "Pendulum-v1"
    starts, ends = ours.episode_starts, ours.episode_ends
    for i, ep in enumerate(theirs.iterate_episodes()):
        s, e = starts[i], ends[i] + 1
        np.testing.assert_array_equal(ep.observations[:-1], ours.observations[s:e])
        np.testing.assert_array_equal(ep.observations[-1], ours.next_observations[e - 1])
        np.testing.assert_array_equal(ep.actions, ours.actions[s:e])
        np.testing.assert_array_equal(ep.rewards, ours.rewards[s:e])
        np.testing.assert_array_equal(ep.terminations, ours.terminals[s:e])
        np.testing.assert_array_equal(ep.truncations, ours.timeouts[s:e])
    back = load_dataset("offrl/pendulum/medium-v0")  # by its Minari id
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(ours, name), err_msg=name)
    assert back.env_id == "Pendulum-v1"


def test_a_dataset_minari_collected_resolves_by_its_id() -> None:
    """Three Pendulum episodes of 50 random steps, written by minari's own
    ``create_dataset_from_buffers`` (its DataCollector would need jax)."""
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Pendulum-v1", max_episode_steps=50)
    rng = np.random.default_rng(0)
    buffers = []
    for i in range(3):
        obs, _ = env.reset(seed=i)
        o, a, r, te, tr = [obs], [], [], [], []
        done = False
        while not done:
            action = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, reward, term, trunc, _ = env.step(action)
            o.append(obs)
            a.append(action)
            r.append(float(reward))
            te.append(term)
            tr.append(trunc)
            done = term or trunc
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=np.array(o),
                actions=np.array(a),
                rewards=r,
                terminations=te,
                truncations=tr,
            )  # fmt: skip
        )
    minari.create_dataset_from_buffers(
        "mine/pendulum/random-v0", buffers, env=env, algorithm_name="uniform random"
    )
    theirs = minari.load_dataset("mine/pendulum/random-v0")
    ours = load_dataset("mine/pendulum/random-v0")
    assert len(ours) == theirs.total_steps == 150
    assert ours.env_id == "Pendulum-v1" and int(ours.timeouts.sum()) == 3
    returns = [float(ep.rewards.sum()) for ep in theirs.iterate_episodes()]
    np.testing.assert_allclose(ours.episode_returns(), returns, rtol=1e-6)
    assert main(["train", "--algo", "bc", "--dataset", "mine/pendulum/random-v0", "--steps", "20",
                 "--eval-every", "0", "--eval-episodes", "1", "--no-progress",
                 "--out", str(minari_datasets_dir().parent / "run"),
                 "--set", "hidden=[16]"]) == 0  # fmt: skip


def test_the_cli_exports_and_bad_ids_are_refused(
    _local_minari: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "to-minari", "pendulum-random-v0", "offrl/pendulum/random-v0"]) == 0
    assert "offrl/pendulum/random-v0" in minari.list_local_datasets()
    with pytest.raises(DatasetError, match="dataset_id"):
        export_minari(load_dataset("pendulum-random-v0"), "no-version")
    assert main(["dataset", "to-minari", "pendulum-random-v0", "../escape-v0"]) == 2
    assert "dataset_id" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="Minari dataset under"):
        load_dataset("nobody/nothing-v0")
