"""Shared by the tests that compare offrl with d3rlpy 2.8.1 run in its own virtual environment
(``bash benchmarks/d3rlpy/setup.sh``): where that environment is, a skip marker for when it
is absent, and moving ``nn.Linear`` layers between d3rlpy's networks and offrl's."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from offrl.nn.mlp import EnsembleMLP

ROOT = Path(__file__).resolve().parents[1]
D3RLPY_PYTHON = ROOT / "benchmarks" / ".venv-d3rlpy" / "bin" / "python"
needs_d3rlpy = pytest.mark.skipif(
    not D3RLPY_PYTHON.exists(), reason="run benchmarks/d3rlpy/setup.sh first"
)


def run_d3rlpy(script: str, out: Path, *args: str, timeout: int = 300) -> dict[str, Any]:
    """Run ``benchmarks/d3rlpy/<script>`` in d3rlpy's environment with ``--out out`` and load
    what it saved (plain tensors: ``weights_only=True``)."""
    cmd = [str(D3RLPY_PYTHON), str(ROOT / "benchmarks" / "d3rlpy" / script), "--out", str(out)]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    run: dict[str, Any] = torch.load(out, weights_only=True)
    return run


def load_layers(net: EnsembleMLP, members: list[list[list[torch.Tensor]]]) -> None:
    """d3rlpy's ``nn.Linear`` layers (``W [out, in]``) into offrl's ``W [E, in, out]`` views."""
    with torch.no_grad():
        for i, (w, b) in enumerate(net.layers()):
            for e, layers in enumerate(members):
                w[e].copy_(layers[i][0].t())
                b[e, 0].copy_(layers[i][1])


def max_diff(net: EnsembleMLP, members: list[list[list[torch.Tensor]]]) -> float:
    """The largest absolute difference between ``net``'s weights and d3rlpy's layers."""
    return max(
        max(
            float((w[e].detach() - layers[i][0].t()).abs().max()),
            float((b[e, 0].detach() - layers[i][1]).abs().max()),
        )
        for i, (w, b) in enumerate(net.layers())
        for e, layers in enumerate(members)
    )
