"""CUDA-graph replay of updates (offrl.train.graphs): refused where it cannot apply, and on a GPU
the same training as the eager update."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _devices import needs_cuda
from _training import train_run

from offrl.algos import EnvSpec, get_algorithm
from offrl.bench.speed import synthetic_dataset
from offrl.data.sampler import TensorSampler
from offrl.train import TrainConfig, load_checkpoint, train
from offrl.train.graphs import GraphedUpdate


def _algo(name: str, device: str, **extra: Any) -> Any:
    cls = get_algorithm(name)
    cfg = cls.config_class.from_dict({"hidden": (64, 64), "batch_size": 32, **extra})
    return cls(EnvSpec((5,), 2), cfg, seed=0, device=device)


def test_graph_cycles() -> None:
    assert _algo("td3bc", "cpu").graph_cycle() == 2
    assert _algo("td3bc", "cpu", policy_freq=3).graph_cycle() == 3
    assert _algo("bc", "cpu").graph_cycle() == 1
    assert _algo("bc", "cpu", policy="gaussian").graph_cycle() is None  # a host-side check
    assert _algo("iql", "cpu").graph_cycle() is None  # its actor's lr follows a schedule


def test_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be replayed"):
        GraphedUpdate(_algo("iql", "cpu"))
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedUpdate(_algo("td3bc", "cpu"))
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=5, progress=False, cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA device"):
        train(cfg)


@needs_cuda
@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("td3bc", {"policy_noise": 0.0}),
        ("td3bc", {}),
        ("td3bc", {"policy_freq": 3}),
        ("bc", {}),
    ],
    ids=["td3bc-no-noise", "td3bc", "td3bc-freq3", "bc"],
)
def test_graphs_train_as_the_eager_update(name: str, extra: dict[str, Any]) -> None:
    """The same start, the same batches: the same metrics and weights after the eager warm-up
    and 30 replays (target-smoothing noise included: the generator advances on replay)."""
    data = synthetic_dataset(n=1000, obs_dim=5, act_dim=2)
    eager, graphed = _algo(name, "cuda", **extra), _algo(name, "cuda", **extra)
    graph = GraphedUpdate(graphed, eager=2)
    sampler = TensorSampler(data, 32, seed=1, device="cuda")
    for _ in range(40):
        batch = sampler.sample()
        m_eager, m_graph = eager.update(batch), graph.update(batch)
        assert m_eager.keys() == m_graph.keys()
        for k in m_eager:
            assert m_graph[k] == pytest.approx(m_eager[k], rel=1e-4, abs=1e-6), k
    assert graph.graphs and eager.num_updates == graphed.num_updates == 40
    for key in ("actor", "critic"):
        if hasattr(eager, key):
            for (n, a), b in zip(
                getattr(eager, key).state_dict().items(),
                getattr(graphed, key).state_dict().values(),
                strict=True,
            ):
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=n)


@needs_cuda
def test_td3bc_learns_with_graphs(tmp_path: Path) -> None:
    """TD3+BC replayed from CUDA graphs beats the pendulum-medium-v0 behaviour policy."""
    final = train_run(
        tmp_path,
        algo="td3bc",
        dataset="pendulum-medium-v0",
        steps=3000,
        seed=0,
        device="cuda",
        cuda_graphs=True,
    )
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


@needs_cuda
def test_resume_with_graphs(tmp_path: Path) -> None:
    """A run stopped at its checkpoint and resumed (eager warm-up, then a new capture) ends
    where the uninterrupted one does."""
    cfg = TrainConfig(
        dataset="pendulum-medium-v0",
        steps=80,
        eval_every=0,
        eval_episodes=1,
        log_every=20,
        checkpoint_every=40,
        progress=False,
        device="cuda",
        cuda_graphs=True,
        algo_config={"hidden": [64, 64]},
    )
    train(dataclasses.replace(cfg, out=str(tmp_path / "a")))
    train(dataclasses.replace(cfg, out=str(tmp_path / "b"), steps=40))
    train(dataclasses.replace(cfg, out=str(tmp_path / "b")), resume=True)
    a, b = (load_checkpoint(tmp_path / r / "checkpoints" / "latest.pt") for r in "ab")
    assert a["step"] == b["step"] == 80
    for key in ("actor", "critic"):
        for name, t in a["algo"][key].items():
            np.testing.assert_allclose(
                b["algo"][key][name].numpy(), t.numpy(), rtol=1e-4, atol=1e-6, err_msg=name
            )
