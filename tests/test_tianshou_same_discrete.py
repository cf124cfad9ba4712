"""offrl's discrete updates equal Tianshou 2.0.1's (the second seed's library), from the same
weights and batches: QR-DQN, discrete CQL (QR-DQN plus the log-sum-exp penalty) and discrete
BCQ, each over several updates with target-network copies in between
(``benchmarks/tianshou/same_update_discrete.py`` runs Tianshou's own ``_preprocess_batch`` and
``_update_with_batch`` in its virtual environment)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import EnvSpec, get_algorithm
from offrl.data.sampler import Batch

ROOT = Path(__file__).resolve().parents[1]
TIANSHOU_PYTHON = ROOT / "benchmarks" / ".venv-tianshou" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not TIANSHOU_PYTHON.exists(), reason="run benchmarks/tianshou/setup.sh first"
)
OBS, ACTIONS, B, UPDATES = 6, 4, 16, 7
CASES = {
    "qrdqn": ("qrdqn", {"num_quantiles": 8}),
    "cql": ("discrete_cql", {"num_quantiles": 8, "min_q_weight": 3.0}),
    "bcq": ("discrete_bcq", {"threshold": 0.3, "imitation_penalty": 0.01}),
}


def _layers(algo: Any) -> list[list[torch.Tensor]]:
    """The Q-network's layers as ``nn.Linear`` ``[W [out, in], b [out]]``."""
    return [[w[0].detach().t().clone(), b[0, 0].detach().clone()] for w, b in algo.q.net.layers()]


def _batches(seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(UPDATES):
        out.append(
            {
                "obs": torch.randn(B, OBS, generator=g),
                "act": torch.randint(ACTIONS, (B,), generator=g),
                "rew": torch.randn(B, generator=g),
                "obs_next": torch.randn(B, OBS, generator=g),
                "terminated": (torch.rand(B, generator=g) < 0.2),
            }
        )
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_offrl_update_equals_tianshou(case: str, tmp_path: Path) -> None:
    name, options = CASES[case]
    cls = get_algorithm(name)
    config = cls.config_class.from_dict(
        {"hidden": (32, 32), "lr": 1e-3, "target_update_every": 3, "gamma": 0.9, **options}
    )
    algo = cls(EnvSpec((OBS,), ACTIONS, discrete=True), config, seed=0)
    layers = _layers(algo)
    batches = _batches(seed=1)
    inp: dict[str, Any] = {
        "algo": case,
        "layers": layers,
        "num_actions": ACTIONS,
        "num_quantiles": options.get("num_quantiles", 1),
        "gamma": 0.9,
        "lr": 1e-3,
        "target_update_freq": 3,
        "min_q_weight": options.get("min_q_weight", 0.0),
        "threshold": options.get("threshold", 0.0),
        "imitation_penalty": options.get("imitation_penalty", 0.0),
        "batches": batches,
    }
    if case == "bcq":  # offrl's last layer holds both heads: A Q-values, then A logits
        w, b = layers[-1]
        inp["layers"] = [*layers[:-1], [w[:ACTIONS], b[:ACTIONS]]]
        inp["imitator"] = [w[ACTIONS:], b[ACTIONS:]]
    torch.save(inp, tmp_path / "inp.pt")
    script = ROOT / "benchmarks" / "tianshou" / "same_update_discrete.py"
    cmd = [str(TIANSHOU_PYTHON), str(script), "--inp", str(tmp_path / "inp.pt")]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    theirs = torch.load(tmp_path / "out.pt", weights_only=True)

    ours = []
    for b in batches:
        batch = Batch(b["obs"], b["act"], b["rew"], b["obs_next"], b["terminated"].float())
        metrics = algo.update(batch)
        if case == "bcq":  # Tianshou reports the sum of BCQ's three terms
            total = metrics["imitation_loss"] + 0.01 * metrics["logits_penalty"]
            ours.append(metrics["q_loss"] + total)
        elif case == "cql":
            ours.append(metrics["qr_loss"] + 3.0 * metrics["cql_loss"])
        else:
            ours.append(metrics["qr_loss"])
    np.testing.assert_allclose(ours, theirs["losses"].numpy(), rtol=1e-5)
    final = _layers(algo)
    if case == "bcq":
        w, b = final[-1]
        final = [*final[:-1], [w[:ACTIONS], b[:ACTIONS]]]
        np.testing.assert_allclose(w[ACTIONS:], theirs["imitator"][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b[ACTIONS:], theirs["imitator"][1], rtol=1e-4, atol=1e-6)
    for (w, b), (tw, tb) in zip(final, theirs["layers"], strict=True):
        np.testing.assert_allclose(w, tw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, tb, rtol=1e-4, atol=1e-6)
