"""benchmarks/eager_floor.py: it times offrl's two TD3+BC paths on the same arithmetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    return load_script("eager_floor.py", "eager_floor")


def test_floor_check_compares_the_two_paths(floor: ModuleType) -> None:
    """Same weights after critic-only and actor steps, and far apart when only the
    target-smoothing noise differs: the script's guard can fail (tests/test_td3bc_fused.py
    checks the paths themselves)."""
    assert floor.check_same_update(updates=3) < 1e-6
    # Adam moves a weight by at most about lr = 3e-4 a step.
    assert floor.check_same_update(updates=2, fused_seed=1) > 1e-4


def test_eager_floor_script_runs(floor: ModuleType, tmp_path: Path) -> None:
    args = ["--hidden", "16", "16", "--rounds", "2", "--seconds", "0.1", "--threads", "1"]
    assert floor.main([*args, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "floor.json").read_text())
    assert set(result["median"]) == {"autograd", "fused"}
    assert all(len(r) == 2 and min(r) > 0 for r in result["rates"].values())
    assert result["max_weight_diff"] < 1e-6
    assert "fused / autograd" in (tmp_path / "FLOOR.md").read_text()


def test_eager_floor_d3rlpy_needs_its_shapes(floor: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        floor.main(["--d3rlpy", "--hidden", "16", "16", "--out", str(tmp_path)])


@pytest.mark.skipif(
    not (Path(__file__).resolve().parent.parent / "benchmarks/.venv-d3rlpy/bin/python").exists(),
    reason="no d3rlpy venv (bash benchmarks/d3rlpy/setup.sh)",
)
def test_eager_floor_with_d3rlpy(
    floor: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    args = ["--d3rlpy", "--rounds", "2", "--seconds", "0.3", "--threads", "1"]
    assert floor.main([*args, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "floor.json").read_text())
    assert len(result["rates"]["d3rlpy"]) == 2 and min(result["rates"]["d3rlpy"]) > 0
    assert result["fused_over_d3rlpy"] > 0 and result["autograd_over_d3rlpy"] > 0
    assert "fused / d3rlpy" in (tmp_path / "FLOOR.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None, reason="no C++ toolchain"
)
def test_cxx_floor_matches_fused_update(floor: ModuleType) -> None:
    """benchmarks/td3bc_floor.cpp (compiled on first use, about a minute) computes offrl's
    update: the C++ figures in benchmarks/results/SPEED.md time the same arithmetic."""
    assert floor.check_cxx_update(updates=7) < 1e-6
