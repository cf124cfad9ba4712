"""What a user meets when something goes wrong, from the user's side: the command, its exit
status and its message (issue 27's list, one test per failure)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl import Dataset, load_algorithm
from offrl.algos import TD3BC, EnvSpec, TD3BCConfig
from offrl.cli import main
from offrl.data import load_dataset, save_dataset
from offrl.errors import TrainingDiverged
from offrl.train.guard import DivergenceGuard

BASE = ["train", "--dataset", "pendulum-medium-v0", "--no-progress", "--eval-episodes", "1"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _one_or_two_lines(err: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 2, err
    assert "Traceback" not in err and "weights_only" not in err, err


# ---------------------------------------------------------------------- divergence
def test_diverging_run_stops_with_a_diagnosis_and_keeps_its_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, err = _run(
        capsys,
        *BASE,
        "--algo", "td3bc", "--steps", "300", "--checkpoint-every", "1", "--out", str(out),
        "--set", "actor_lr=1e6", "--set", "critic_lr=1e6",
    )  # fmt: skip
    assert code == 3, err
    _one_or_two_lines(err)
    assert "critic_loss became" in err and "critic_lr=1e+06" in err and "final.json" in err
    final = json.loads((out / "final.json").read_text())  # strict JSON: no NaN
    assert final["status"] == "diverged"
    diag = final["diagnosis"]
    step = final["diverged_at_step"]
    assert diag["quantity"] == "critic_loss" and diag["step"] == step and step < 300
    assert diag["last_finite"] and diag["likely_causes"]
    assert final["last_checkpoint_step"] == step - 1
    algo = load_algorithm(out / "checkpoints" / "latest.pt")
    for net in algo.modules_by_name().values():
        for p in net.parameters():
            assert torch.isfinite(p).all()
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_iql_divergence_is_a_short_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(
        capsys,
        *BASE,
        "--algo", "iql", "--steps", "200", "--out", str(tmp_path / "run"),
        "--set", "actor_lr=1e6", "--set", "critic_lr=1e6", "--set", "value_lr=1e6",
    )  # fmt: skip
    assert code == 3
    _one_or_two_lines(err)
    assert "tensor(" not in err


def test_guard_warns_once_on_runaway_q_values() -> None:
    algo = TD3BC(EnvSpec((3,), 1), TD3BCConfig(hidden=(8,)))
    guard = DivergenceGuard(algo, reward_bound=1.0)  # |Q| <= 100; warns above 1000
    with pytest.warns(RuntimeWarning, match="q_mean is running away"):
        for step, q in enumerate([10.0, 100.0, 2e3, 5e4], start=1):
            guard.check_metrics(step, {"q_mean": q})
    assert len(guard.warnings) == 1 and "2000" in guard.warnings[0]
    with pytest.raises(TrainingDiverged) as info:
        guard.check_metrics(5, {"q_mean": math.nan})
    assert info.value.diagnosis["last_finite"][-1] == {"step": 4, "value": 5e4}
    assert "grew" in info.value.diagnosis["trend"]


# ---------------------------------------------------------------------- resume
def _short_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    out = tmp_path / "run"
    code, err = _run(
        capsys, *BASE, "--algo", "bc", "--steps", "200", "--checkpoint-every", "100",
        "--eval-every", "100", "--out", str(out), *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--seed", "1"], "seed: 0 -> 1"),
        (["--dataset", "pendulum-expert-v0"], "dataset: 'pendulum-medium-v0' -> 'pendulum-expert"),
        (["--set", "batch_size=64"], "algo_config: {} -> {'batch_size': 64}"),
    ],
    ids=["seed", "dataset", "set"],
)
def test_resume_with_other_options_is_refused_and_the_record_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: list[str], named: str
) -> None:
    out = _short_run(tmp_path, capsys)
    before = {f: (out / f).read_bytes() for f in ("config.json", "final.json")}
    code, err = _run(
        capsys, *BASE, "--algo", "bc", "--steps", "200", "--checkpoint-every", "100",
        "--eval-every", "100", "--out", str(out), "--resume", *change,
    )  # fmt: skip
    assert code == 2
    _one_or_two_lines(err)
    assert "was trained with other options" in err
    assert named in err
    assert {f: (out / f).read_bytes() for f in before} == before


def test_resume_on_changed_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_dataset("pendulum-medium-v0")
    path = tmp_path / "mine.npz"
    save_dataset(data, path)
    argv = [*BASE, "--algo", "bc", "--steps", "100", "--checkpoint-every", "50"]
    argv = [*argv, "--dataset", str(path), "--out", str(tmp_path / "run")]
    assert _run(capsys, *argv)[0] == 0
    changed = data.arrays() | {"rewards": data.rewards + 1.0}
    save_dataset(Dataset(**changed, env_id=data.env_id), path)  # same name, other contents
    code, err = _run(capsys, *argv, "--resume")
    assert code == 2 and "was trained on other data (dataset fingerprint" in err


def test_resume_with_more_steps_needs_allow_change_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _short_run(tmp_path, capsys)
    more = [*BASE, "--algo", "bc", "--steps", "300", "--checkpoint-every", "100"]
    more += ["--eval-every", "100", "--out", str(out), "--resume"]
    code, err = _run(capsys, *more)
    assert code == 2 and "--allow-change steps" in err
    code, err = _run(capsys, *more, "--allow-change", "steps")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["resumes"] == [{"step": 200, "changed": {"steps": [200, 300]}}]
    assert config["train"]["steps"] == 300
    code, err = _run(capsys, *more, "--allow-change", "seed")
    assert code == 2 and "cannot change on resume" in err


def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _short_run(tmp_path, capsys, "--steps", "300")
    reference = json.loads((out / "final.json").read_text())
    ckpt = out / "checkpoints"
    # Lose the end: the damaged latest.pt is passed over for step_200.pt, and the last 100
    # steps are trained again to the same result. A temp file a kill left is removed.
    (ckpt / "step_300.pt").unlink()
    (ckpt / "latest.pt").write_bytes((ckpt / "latest.pt").read_bytes()[:1000])
    (ckpt / ".latest.pt.12345.abcdef.tmp").write_bytes(b"half a checkpoint")
    code, err = _run(
        capsys, *BASE, "--algo", "bc", "--steps", "300", "--checkpoint-every", "100",
        "--eval-every", "100", "--out", str(out), "--resume",
    )  # fmt: skip
    assert code == 0, err
    assert "warning: resuming from step_200.pt" in err and "latest.pt" in err
    assert json.loads((out / "final.json").read_text()) == reference
    assert not list(ckpt.glob(".*.tmp"))


def test_metrics_csv_is_current_during_a_run(tmp_path: Path) -> None:
    from offrl.train.loggers import MetricLogger, read_metrics

    logger = MetricLogger(tmp_path)
    logger.log(1, "train", {"loss": 1.0})
    logger.log(2, "eval", {"eval/return_mean": float("nan")})  # written as null, never NaN
    csv_rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[0].split(",") == [
        "step",
        "kind",
        "loss",
        "eval/return_mean",
    ]
    assert read_metrics(tmp_path / "metrics.jsonl")[1]["eval/return_mean"] is None


def test_a_checkpoint_is_written_before_an_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offrl.train import TrainConfig, train, trainer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the simulator crashed")

    monkeypatch.setattr(trainer, "evaluate", broken)
    cfg = TrainConfig(
        algo="bc", steps=100, eval_every=50, checkpoint_every=50, progress=False,
        out=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="simulator"):
        train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "step_50.pt").exists()


# ---------------------------------------------------------------------- checks before training
def _variant(tmp_path: Path, name: str, **arrays: np.ndarray) -> str:
    data = load_dataset("pendulum-medium-v0")
    env_id = "Pendulum-v1" if name in ("wide_actions", "narrow_obs") else None
    path = tmp_path / f"{name}.npz"
    save_dataset(Dataset(**{**data.arrays(), **arrays}, env_id=env_id), path)
    return str(path)


def test_data_that_does_not_fit_is_refused_before_the_first_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = load_dataset("pendulum-medium-v0").arrays()
    n = len(a["rewards"])
    cases = {
        "wide_actions": ({"actions": np.repeat(a["actions"], 3, 1)}, "actions: the dataset's"),
        "narrow_obs": (
            {
                "observations": a["observations"][:, :2],
                "next_observations": a["next_observations"][:, :2],
            },
            "observations: the dataset's have shape (2,)",
        ),
        "discrete": (
            {"actions": (a["actions"][:, 0] > 0).astype(np.int64)},
            "td3bc handles continuous actions",
        ),
        "image": (
            {
                "observations": np.zeros((n, 1, 4, 4), np.uint8),
                "next_observations": np.zeros((n, 1, 4, 4), np.uint8),
            },
            "td3bc handles vector observations",
        ),
    }
    for name, (arrays, message) in cases.items():
        path = _variant(tmp_path, name, **arrays)
        out = tmp_path / f"run-{name}"
        argv = ["train", "--algo", "td3bc", "--dataset", path, "--out", str(out)]
        code, err = _run(capsys, *argv, "--no-progress")
        assert code == 2, (name, err)
        _one_or_two_lines(err)
        assert message in err, (name, err)
        assert not (out / "checkpoints").exists(), name


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("actor_lr=abc", "option actor_lr: expected a number, got 'abc'"),
        ("batch_size=0", "option batch_size: 0 is outside [1, inf)"),
        ("actor_lr=-1", "option actor_lr: -1 is outside (0, inf)"),
        ("hidden=[64,0]", "option hidden: 0 is outside"),
        ("gamma=1.5", "option gamma: 1.5 is outside (0, 1]"),
    ],
)
def test_bad_set_options_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    code, err = _run(capsys, *BASE, "--algo", "td3bc", "--out", str(tmp_path), "--set", option)
    assert code == 2
    _one_or_two_lines(err)
    assert message in err


# ---------------------------------------------------------------------- one error boundary
class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


def test_damaged_or_malicious_checkpoints_get_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.pt"
    torch.save({"algo": TD3BC(EnvSpec((3,), 1)).state_dict(), "env_id": "Pendulum-v1"}, good)
    raw = good.read_bytes()
    files = {
        "truncated": raw[: len(raw) // 2],
        "zeros": b"\0" * 4096,
        "text": b"not a checkpoint",
        "empty": b"",
        "evil": pickle.dumps(_Evil()),
    }
    for name, content in files.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        code, err = _run(capsys, "evaluate", str(path), "--episodes", "1")
        assert code == 2, (name, err)
        _one_or_two_lines(err)
        assert str(path) in err and "this must never run" not in err, name
    wrong = tmp_path / "wrong.pt"
    torch.save({"algo": {"algo": "td3bc", "config": {}}}, wrong)
    code, err = _run(capsys, "evaluate", str(wrong), "--episodes", "1")
    assert code == 2 and "does not restore an offrl algorithm" in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        main([*BASE, "--algo", "td3bc", "--out", str(tmp_path), "--set", "batch_size=0", "--debug"])


def test_version_plot_and_unknown_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("offrl ")
    png = tmp_path / "curve.png"
    code, err = _run(capsys, "plot", str(tmp_path / "missing"), "--out", str(png))
    assert code == 2 and "not a run directory" in err and not png.exists()
    code, err = _run(capsys, "dataset", "info", "no-such-dataset-v0")
    assert code == 2 and "hopper-medium-v0" in err and "pendulum-medium-v0" in err


def test_train_reports_a_dataset_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "data"))
    code, err = _run(
        capsys, "train", "--algo", "bc", "--dataset", "pendulum-random-v0", "--steps", "10",
        "--eval-every", "0", "--eval-episodes", "1", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 0, err
    assert "offrl: building pendulum-random-v0 (first use" in err


def test_readme_deployment_line_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    assert "from offrl import load_algorithm" in text
    out = _short_run(tmp_path, capsys)
    algo = load_algorithm(out / "checkpoints" / "latest.pt")
    action = algo.act(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_a_diverged_grid_cell_is_reported_as_failed_with_its_diagnosis(tmp_path: Path) -> None:
    from offrl.bench.grid import GridSpec, run_grid
    from offrl.bench.report import collect

    spec = GridSpec(
        algos=["td3bc"],
        datasets=["pendulum-medium-v0"],
        seeds=[0],
        steps=50,
        eval_every=50,
        eval_episodes=1,
        checkpoint_every=10,
        algo_config={"td3bc": {"actor_lr": 1e6, "critic_lr": 1e6}},
    )
    result = run_grid(spec, tmp_path / "grid", executor="local", workers=1, log=lambda _: None)
    assert result["failed"]
    (cell,) = collect(tmp_path / "grid")
    assert cell.status == "failed" and cell.error and "diverged at step" in cell.error
