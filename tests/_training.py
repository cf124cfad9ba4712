"""The learning tests' one training call: a short offline run, evaluated once at the end.

``OFFRL_TEST_DEVICE=cuda`` runs every learning test on a GPU (the default is the CPU)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from offrl.train import TrainConfig, train

# CQL is ~20x the FLOPs of TD3+BC per update (the critic also scores 3 * num_samples sampled
# actions per state): about 1 update/s with the paper's networks on this 2-core CPU. The learning
# tests therefore use smaller networks, batch and sample counts and SAC's actor learning rate.
CQL_SMALL = {
    "hidden": (128, 128),
    "batch_size": 128,
    "num_samples": 4,
    "actor_lr": 3e-4,
    "alpha_lr": 3e-4,
    "cql_alpha": 5.0,
}
"""The CQL-based learning tests' settings (CQL, Cal-QL): small enough for the default suite."""


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint
    travels."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded: dict[str, Any] = torch.load(buf, weights_only=True)
    return loaded


def train_run(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    """Train into ``tmp_path/run`` (one evaluation, only the final checkpoint, one thread) and
    return ``final.json``, checking it matches what ``train`` returned."""
    kw.setdefault("device", os.environ.get("OFFRL_TEST_DEVICE", "cpu"))
    kw.setdefault("final_eval_episodes", 0)  # the learning tests judge the last evaluation
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        eval_every=0,  # one evaluation, at the end
        eval_episodes=10,
        log_every=500,
        checkpoint_every=10**9,  # only the final checkpoint
        progress=False,
        threads=1,
        **kw,
    )
    final = train(cfg)
    assert json.loads((tmp_path / "run" / "final.json").read_text()) == final
    return final
