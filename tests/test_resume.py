"""Exact resume after a kill, determinism, and atomic checkpoint writes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _devices import DEVICES, needs_cuda

import offrl.io as io_module
from offrl.cli import main
from offrl.data import load_dataset
from offrl.rng import restore_generator
from offrl.train import TrainConfig, load_checkpoint, read_metrics, save_checkpoint, train

DATASET = "pendulum-medium-v0"
STEPS = 400
RUN_ARGS = [
    "train", "--algo", "td3bc", "--dataset", DATASET, "--steps", str(STEPS), "--seed", "3",
    "--eval-every", "200", "--eval-episodes", "2", "--checkpoint-every", "100",
    "--log-every", "50", "--threads", "1", "--no-progress",
]  # fmt: skip


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _records(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the wall-clock speed column."""
    return [
        {k: v for k, v in r.items() if k != "updates_per_s"}
        for r in read_metrics(run / "metrics.jsonl")
    ]


@pytest.fixture(scope="module", params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each torch device the machine has (the CPU, and CUDA where present)."""
    return str(request.param)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, device: str) -> Path:
    """Run A: the whole run in one go."""
    load_dataset(DATASET)  # build the cache once, before any subprocess needs it
    out = tmp_path_factory.mktemp("resume") / "A"
    assert main([*RUN_ARGS, "--device", device, "--out", str(out)]) == 0
    return out


def test_kill_and_resume_matches_uninterrupted(
    uninterrupted: Path, tmp_path: Path, device: str
) -> None:
    run_b = tmp_path / "B"
    proc = subprocess.Popen(
        [sys.executable, "-m", "offrl.cli", *RUN_ARGS, "--device", device, "--out", str(run_b)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Kill it once step 200 is checkpointed and it has logged past that point (step 250), so
    # that the resumed run must discard records written after its last checkpoint.
    deadline = time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"training exited before it could be killed: {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("training did not reach step 250 in time")
            if (run_b / "checkpoints" / "step_200.pt").exists() and any(
                r["step"] > 200 for r in read_metrics(run_b / "metrics.jsonl")
            ):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert not (run_b / "final.json").exists()
    assert not (run_b / "checkpoints" / f"step_{STEPS}.pt").exists()
    killed_at = load_checkpoint(run_b / "checkpoints" / "latest.pt")["step"]
    assert killed_at in (200, 300)
    assert max(r["step"] for r in read_metrics(run_b / "metrics.jsonl")) > killed_at

    assert main([*RUN_ARGS, "--device", device, "--out", str(run_b), "--resume"]) == 0

    # The final parameters, optimiser moments, RNG and sampler states are bit-identical.
    a = load_checkpoint(uninterrupted / "checkpoints" / "latest.pt")
    b = load_checkpoint(run_b / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == STEPS
    _assert_same(a["algo"], b["algo"], "algo")
    _assert_same(a["sampler"], b["sampler"], "sampler")
    for step in range(100, STEPS + 1, 100):
        _assert_same(
            load_checkpoint(uninterrupted / "checkpoints" / f"step_{step}.pt")["algo"],
            load_checkpoint(run_b / "checkpoints" / f"step_{step}.pt")["algo"],
            f"step_{step}",
        )
    final_a = json.loads((uninterrupted / "final.json").read_text())
    final_b = json.loads((run_b / "final.json").read_text())
    assert final_a == final_b

    # No step logged twice, and the same records (values included) as the uninterrupted run.
    keys = [(r["step"], r["kind"]) for r in read_metrics(run_b / "metrics.jsonl")]
    assert len(keys) == len(set(keys))
    assert _records(run_b) == _records(uninterrupted)


def test_checkpoints_load_weights_only(uninterrupted: Path) -> None:
    files = sorted((uninterrupted / "checkpoints").glob("*.pt"))
    assert [f.name for f in files] == [
        "latest.pt", "step_100.pt", "step_200.pt", "step_300.pt", "step_400.pt",
    ]  # fmt: skip
    for f in files:
        state = torch.load(f, map_location="cpu", weights_only=True)
        assert {"algo", "sampler", "step", "env_id", "train_config"} <= set(state)
        assert state["algo"]["algo"] == "td3bc"
        assert state["algo"]["num_updates"] == state["step"]
    _assert_same(
        load_checkpoint(uninterrupted / "checkpoints" / "latest.pt"),
        load_checkpoint(uninterrupted / "checkpoints" / "step_400.pt"),
    )


def test_evaluate_acts_on_the_cpu(uninterrupted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``offrl evaluate`` loads onto the CPU by default, whatever device trained the run."""
    assert (
        main(["evaluate", str(uninterrupted / "checkpoints" / "latest.pt"), "--episodes", "1"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == STEPS and -2000 < out["eval/return_mean"] < 0, out


def test_resume_finished_run_changes_nothing(
    uninterrupted: Path, tmp_path: Path, device: str
) -> None:
    run = tmp_path / "A-copy"
    shutil.copytree(uninterrupted, run)
    before = _records(run)
    assert main([*RUN_ARGS, "--device", device, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "final.json").read_text()) == json.loads(
        (uninterrupted / "final.json").read_text()
    )
    _assert_same(
        load_checkpoint(run / "checkpoints" / "latest.pt")["algo"],
        load_checkpoint(uninterrupted / "checkpoints" / "latest.pt")["algo"],
    )
    keys = [(r["step"], r["kind"]) for r in read_metrics(run / "metrics.jsonl")]
    assert len(keys) == len(set(keys)), keys
    assert _records(run) == before


def _short(out: Path, seed: int) -> TrainConfig:
    return TrainConfig(
        algo="td3bc",
        dataset=DATASET,
        out=str(out),
        steps=60,
        seed=seed,
        eval_every=0,
        eval_episodes=1,
        log_every=20,
        checkpoint_every=30,
        progress=False,
        algo_config={"hidden": [64, 64]},
    )


def test_same_seed_same_result(tmp_path: Path) -> None:
    finals = [train(_short(tmp_path / name, seed)) for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    states = [load_checkpoint(tmp_path / n / "checkpoints" / "latest.pt") for n in "abc"]
    assert finals[0] == finals[1]
    _assert_same(states[0]["algo"], states[1]["algo"])
    _assert_same(states[0]["sampler"], states[1]["sampler"])
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    # A different seed gives a different network (and batches).
    assert not torch.equal(
        states[0]["algo"]["actor"]["net.flat"], states[2]["algo"]["actor"]["net.flat"]
    )
    assert not torch.equal(states[0]["sampler"]["generator"], states[2]["sampler"]["generator"])


@needs_cuda
def test_resume_on_another_device_warns_and_continues(tmp_path: Path) -> None:
    """A run checkpointed on the GPU continues on the CPU: its random generators are re-seeded
    (the two kinds keep different states), with a warning that it will not match an
    uninterrupted run."""
    cfg = _short(tmp_path / "run", seed=1)
    train(dataclasses.replace(cfg, steps=30, device="cuda"))
    with pytest.warns(UserWarning, match="re-seeded"):
        train(dataclasses.replace(cfg, device="cpu"), resume=True)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == state["algo"]["num_updates"] == state["sampler"]["draws"] == 60
    assert state["train_config"]["device"] == "cpu"


# ---------------------------------------------------------------------- atomic writes
def _state(value: float) -> dict[str, Any]:
    return {"w": torch.full((4,), value), "step": int(value)}


def _assert_previous_intact(path: Path) -> None:
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_failed_serialisation_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(path, _state(1))

    def broken_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"partial garbage")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_checkpoint(path, _state(2))
    _assert_previous_intact(path)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_interrupted_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A failure (or Ctrl-C) after the temp file exists: it is removed, the target untouched."""
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(path, _state(1))
    seen: list[str] = []

    def interrupt(*args: Any, **kwargs: Any) -> None:
        seen.extend(p.name for p in path.parent.iterdir() if p.name != path.name)
        raise KeyboardInterrupt

    if where == "write":
        real_fdopen = os.fdopen

        class _Broken:
            def __init__(self, fd: int, mode: str) -> None:
                self.f = real_fdopen(fd, mode)

            def __enter__(self) -> _Broken:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()

            def write(self, data: bytes) -> None:
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                interrupt()

        monkeypatch.setattr(io_module.os, "fdopen", _Broken)
    else:
        monkeypatch.setattr(io_module.os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert seen and all(name.endswith(".tmp") for name in seen)  # the temp file did exist
    _assert_previous_intact(path)


def test_iql_schedule_spans_the_run(tmp_path: Path) -> None:
    """IQL's actor learning rate decays to zero over the run's own length, whatever ``steps``
    is (as in the official code, CORL and d3rlpy), and the resolved length is recorded."""
    cfg = _short(tmp_path / "iql", seed=0)
    cfg.algo = "iql"
    train(cfg)
    state = load_checkpoint(tmp_path / "iql" / "checkpoints" / "latest.pt")
    assert state["algo"]["config"]["max_steps"] == cfg.steps
    assert state["algo"]["actor_optim"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------- generators across devices
def test_generator_restores_exactly_or_reseeds() -> None:
    """A saved state of the generator's own kind is restored exactly; one of another kind (a
    CUDA generator's 16-byte Philox state, here on a CPU one) re-seeds it from the fallback."""
    g = torch.Generator()
    saved = torch.Generator().manual_seed(5)
    assert restore_generator(g, saved.get_state(), 1, 2)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=saved))
    philox = torch.zeros(16, dtype=torch.uint8)
    assert not restore_generator(g, philox, 1, 2)
    first = torch.rand(4, generator=g)
    restore_generator(g, philox, 1, 2)
    assert torch.equal(torch.rand(4, generator=g), first)  # a function of the fallback alone
    restore_generator(g, philox, 1, 3)
    assert not torch.equal(torch.rand(4, generator=g), first)
