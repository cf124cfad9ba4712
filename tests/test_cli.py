"""Smoke tests of the ``offrl`` command line (in-process through ``offrl.cli.main``)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import list_algorithms
from offrl.cli import build_parser, main
from offrl.data import Dataset, load_dataset, save_npz
from offrl.data.registry import data_dir
from offrl.train import load_checkpoint, read_metrics

TRAIN_ARGS = [
    "train", "--algo", "bc", "--dataset", "pendulum-expert-v0", "--steps", "200",
    "--eval-every", "100", "--eval-episodes", "2", "--checkpoint-every", "100",
    "--log-every", "50", "--no-progress",
]  # fmt: skip
TINY_ARGS = [
    "train", "--algo", "bc", "--dataset", "pendulum-expert-v0", "--steps", "20",
    "--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "10",
    "--log-every", "10", "--no-progress",
]  # fmt: skip


def _json_out(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short BC run with intermediate evaluations and checkpoints (shared by several tests)."""
    out = tmp_path_factory.mktemp("cli") / "bc-run"
    assert main([*TRAIN_ARGS, "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------- algos
def test_algos(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["algos"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_algorithms()
    assert {"bc", "td3bc"} <= set(list_algorithms())
    assert main(["algos", "-v"]) == 0
    out = capsys.readouterr().out
    assert "alpha = 2.5\n        Weight of the Q term relative to behaviour cloning" in out


def test_entry_point_subprocess(tmp_path: Path) -> None:
    """``python -m offrl.cli`` works as a program, in a fresh interpreter."""
    res = subprocess.run(
        [sys.executable, "-m", "offrl.cli", "algos"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "td3bc" in res.stdout and "bc" in res.stdout
    # The installed console script (when the package is installed) calls the same function.
    script = Path(sys.executable).with_name("offrl")
    if script.exists():
        assert "from offrl.cli import main" in script.read_text()


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


# ---------------------------------------------------------------------- train
def test_train_writes_run_directory(bc_run: Path) -> None:
    for name in ("metrics.jsonl", "metrics.csv", "config.json", "curve.png", "final.json"):
        assert (bc_run / name).is_file(), name
    for name in ("latest.pt", "step_100.pt", "step_200.pt"):
        assert (bc_run / "checkpoints" / name).is_file(), name
    assert (bc_run / "curve.png").read_bytes().startswith(b"\x89PNG")

    final = json.loads((bc_run / "final.json").read_text())
    assert final["algo"] == "bc" and final["steps"] == 200 and final["eval_episodes"] == 2
    assert isinstance(final["return_mean"], float) and -1700 < final["return_mean"] <= 0
    assert isinstance(final["normalized_score"], float)

    records = read_metrics(bc_run / "metrics.jsonl")
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    eval_steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert train_steps == [50, 100, 150, 200]
    assert eval_steps == [100, 200]
    assert all(np.isfinite(r["bc_loss"]) for r in records if r["kind"] == "train")
    last_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert last_eval["eval/return_mean"] == final["return_mean"]

    with (bc_run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    assert {"step", "kind", "bc_loss", "eval/return_mean"} <= set(rows[0])

    config = json.loads((bc_run / "config.json").read_text())
    assert config["algo_name"] == "bc"
    assert config["train"]["steps"] == 200
    assert config["dataset"]["transitions"] == 20_000
    assert config["env_id"] == "Pendulum-v1"

    ckpt = torch.load(bc_run / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 200 and ckpt["algo"]["algo"] == "bc"
    assert ckpt["algo"]["num_updates"] == 200
    # Observation normalisation is on by default: real statistics are stored.
    assert not torch.equal(ckpt["algo"]["obs_std"], torch.ones(3))
    assert torch.load(bc_run / "checkpoints" / "step_100.pt", weights_only=True)["step"] == 100


def test_train_twice_without_resume_fails(bc_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (bc_run / "checkpoints" / "latest.pt").read_bytes()
    assert main([*TRAIN_ARGS, "--out", str(bc_run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert (bc_run / "checkpoints" / "latest.pt").read_bytes() == before


def test_evaluate_checkpoint(bc_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = bc_run / "checkpoints" / "latest.pt"
    assert main(["evaluate", str(ckpt), "--episodes", "2"]) == 0
    out = _json_out(capsys)
    assert isinstance(out, dict)
    assert out["env_id"] == "Pendulum-v1" and out["step"] == 200
    assert out["eval/length_mean"] == 200
    # Same seed (10000) and episodes as the run's final evaluation: the same return.
    final = json.loads((bc_run / "final.json").read_text())
    assert out["eval/return_mean"] == pytest.approx(final["return_mean"])


def test_norm_obs_off_stores_identity(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TINY_ARGS, "--norm-obs", "0", "--out", str(out)]) == 0
    state = load_checkpoint(out / "checkpoints" / "latest.pt")["algo"]
    assert torch.equal(state["obs_mean"], torch.zeros(3))
    assert torch.equal(state["obs_std"], torch.ones(3))
    assert json.loads((out / "config.json").read_text())["train"]["norm_obs"] is False


def test_set_algorithm_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [*TINY_ARGS, "--out", str(out), "--set", "hidden=[32,32]", "--set", "policy=gaussian"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["algo"]["hidden"] == [32, 32] and config["algo"]["policy"] == "gaussian"
    assert main([*TINY_ARGS, "--out", str(tmp_path / "bad"), "--set", "nope=1"]) == 2
    assert "unknown option" in capsys.readouterr().err


def test_set_takes_several_options() -> None:
    """``--set a=1 b=2`` is ``--set a=1 --set b=2``, in every command that has ``--set``."""
    parser = build_parser()
    for cmd in (
        ["train", "--algo", "bc", "--dataset", "d"],
        ["online", "--env", "Pendulum-v1"],
        ["bench", "speed"],
        ["bench", "run", "--algos", "bc", "--datasets", "d", "--out", "o"],
    ):
        args = parser.parse_args([*cmd, "--set", "a=1", "b=2", "--set", "c=3"])
        assert args.set == ["a=1", "b=2", "c=3"], cmd


def test_unknown_algorithm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*TINY_ARGS, "--out", str(tmp_path / "run")]
    args[args.index("bc")] = "no-such-algo"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'no-such-algo'" in err and "td3bc" in err


def test_tensorboard(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TINY_ARGS, "--tensorboard", "--out", str(out)]) == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    wandb_home = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(wandb_home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(wandb_home / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(wandb_home / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(wandb_home / "data"))
    out = tmp_path / "run"
    assert main([*TINY_ARGS, "--wandb", "--out", str(out)]) == 0
    runs = list(out.glob("wandb/offline-run-*"))
    assert len(runs) == 1, list(out.rglob("*"))
    assert list(runs[0].glob("*.wandb")), list(runs[0].iterdir())


def test_action_outside_action_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 10
    obs = np.zeros((n, 3), np.float32)
    actions = np.zeros((n, 1), np.float32)
    actions[4, 0] = 5.0  # Pendulum-v1 torques lie in [-2, 2]
    ds = Dataset(
        observations=obs,
        actions=actions,
        rewards=np.zeros(n, np.float32),
        next_observations=obs,
        terminals=np.zeros(n, bool),
        timeouts=np.arange(n) == n - 1,
        env_id="Pendulum-v1",
    )
    path = save_npz(ds, tmp_path / "bad.npz")
    code = main([*TINY_ARGS, "--dataset", str(path), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "actions" in err and "row 4" in err and "outside the action space" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------- --import
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crr_cql.py"


def test_import_user_algorithm_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--import FILE.py`` registers a user's algorithm for ``train`` and ``evaluate``."""
    out = tmp_path / "run"
    args = [*TINY_ARGS, "--import", str(EXAMPLE), "--out", str(out), "--set", "hidden=[32,32]"]
    args[args.index("bc")] = "crr_cql"
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["algo_name"] == "crr_cql" and config["algo"]["cql_alpha"] == 5.0
    capsys.readouterr()
    ckpt = str(out / "checkpoints" / "latest.pt")
    assert main(["evaluate", ckpt, "--episodes", "1", "--import", str(EXAMPLE)]) == 0
    assert _json_out(capsys)["eval/length_mean"] == 200  # type: ignore[index]


def test_import_user_module_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--import MODULE`` finds a module in the current directory, as ``python -m`` would."""
    (tmp_path / "my_offrl_algos.py").write_text(
        "from offrl.algos import BC, register\n\n\n"
        '@register("my_bc")\nclass MyBC(BC):\n    """BC under another name."""\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_offrl_algos", raising=False)
    out = tmp_path / "run"
    args = [*TINY_ARGS, "--import", "my_offrl_algos", "--out", str(out)]
    args[args.index("bc")] = "my_bc"
    assert main(args) == 0
    assert json.loads((out / "final.json").read_text())["algo"] == "my_bc"
    assert main([*TINY_ARGS, "--import", "no_such_offrl_module"]) == 2
    assert "no module named 'no_such_offrl_module'" in capsys.readouterr().err


# ---------------------------------------------------------------------- dataset
def test_dataset_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "info", "pendulum-medium-v0"]) == 0
    info = _json_out(capsys)
    assert isinstance(info, dict)
    assert info["transitions"] == 20_000 and info["episodes"] == 100
    assert info["env_id"] == "Pendulum-v1"
    assert info["obs_shape"] == [3] and info["action_dim"] == 1 and info["discrete"] is False
    assert info["terminals"] == 0 and info["timeouts"] == 100
    assert info["episode_length_mean"] == 200
    assert info["return_mean"] == pytest.approx(-528, abs=15)


def test_dataset_info_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "info", "no-such-dataset-v0"]) == 2
    assert "no-such-dataset-v0" in capsys.readouterr().err


def test_dataset_list(capsys: pytest.CaptureFixture[str]) -> None:
    load_dataset("pendulum-medium-v0")  # make sure one is cached
    assert main(["dataset", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("pendulum-random-v0", "pendulum-medium-v0", "pendulum-expert-v0"):
        assert name in out
    medium = next(line for line in out.splitlines() if line.startswith("pendulum-medium-v0"))
    # name, env, transitions, behaviour return, cached
    assert medium.split() == ["pendulum-medium-v0", "Pendulum-v1", "20,000", "-528.1", "True"]
    for name in ("halfcheetah-medium-v0", "hopper-medium-replay-v0", "walker2d-expert-v0"):
        assert name in out  # MuJoCo names are listed whether or not their pack is shipped


def test_dataset_convert_roundtrip(tmp_path: Path) -> None:
    load_dataset("pendulum-expert-v0")
    src = data_dir() / "datasets" / "pendulum-expert-v0.npz"
    assert src.is_file()
    h5 = tmp_path / "expert.hdf5"
    back = tmp_path / "back.npz"
    assert main(["dataset", "convert", str(src), str(h5)]) == 0
    assert main(["dataset", "convert", str(h5), str(back)]) == 0
    a, b = load_dataset(src), load_dataset(back)
    assert a.env_id == b.env_id == "Pendulum-v1"
    for name, arr in a.arrays().items():
        other = b.arrays()[name]
        assert arr.dtype == other.dtype, name
        np.testing.assert_array_equal(arr, other, err_msg=name)
    mini = tmp_path / "minari"
    assert main(["dataset", "convert", str(back), str(mini), "--format", "minari"]) == 0
    c = load_dataset(mini)
    np.testing.assert_array_equal(c.observations, a.observations)
    np.testing.assert_array_equal(c.actions, a.actions)


# ---------------------------------------------------------------------- bench, plot
@pytest.mark.parametrize("algo", ["bc", "awr"])  # AWR needs the trainer's data hooks
def test_bench_speed_json(capsys: pytest.CaptureFixture[str], algo: str) -> None:
    threads = torch.get_num_threads()
    try:
        args = ["bench", "speed", "--algo", algo, "--seconds", "1", "--repeats", "1"]
        assert main([*args, "--threads", "1", "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = _json_out(capsys)
    assert isinstance(out, dict)
    assert out["algo"] == algo
    assert out["updates_per_s"] > 0 and out["flops_per_update"] > 0
    assert out["matmul_gflops"] > 0 and out["bound_fraction"] > 0


def test_bench_sample_json(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        args = ["bench", "sample", "--transitions", "10000", "--threads", "1", "--json"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    out = _json_out(capsys)
    assert out["transitions"] == 10000 and out["batch_size"] == 256
    assert 0 < out["us_per_batch_min"] <= out["us_per_batch"]


def test_plot(bc_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    assert main(["plot", str(bc_run), "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------- options from dataclasses
def _subparser(*names: str) -> Any:
    parser: Any = build_parser()
    for name in names:
        parser = next(
            a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
        ).choices[name]
    return parser


# command, its config dataclass, fields whose flag is hand-written, the required arguments
_CONFIG_COMMANDS = [
    (("train",), "offrl.train:TrainConfig", {"algo_config": "--set"},
     ["--algo", "td3bc", "--dataset", "pendulum-medium-v0"]),
    (("online",), "offrl.train.online:OnlineConfig", {"algo_config": "--set"},
     ["--env", "Pendulum-v1"]),
    (("bench", "run"), "offrl.bench.grid:GridSpec",
     {"algo_config": "--set", "imports": "--import"},
     ["--algos", "td3bc,iql", "--datasets", "pendulum-medium-v0", "--out", "grid"]),
]  # fmt: skip


def _config_class(target: str) -> Any:
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def test_train_help_shows_the_docstrings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from offrl.config import field_docs, help_text
    from offrl.train import TrainConfig

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    docs = field_docs(TrainConfig)
    for field, flag in (("steps", "--steps"), ("seed", "--seed"), ("eval_every", "--eval-every")):
        assert docs[field], field
        assert f"{flag} {field.upper()} {help_text(docs[field])}" in out, field
    assert "Gradient updates. (default: 20000)" in out
    assert "--norm-obs [0|1] Normalise observations" in out and "--no-norm-obs: off" in out


@pytest.mark.parametrize("command", _CONFIG_COMMANDS, ids=lambda c: " ".join(c[0]))
def test_every_config_field_has_a_documented_flag(command: Any) -> None:
    import dataclasses

    names, target, hand_written, _ = command
    cls = _config_class(target)
    by_dest = {a.dest: a for a in _subparser(*names)._actions if a.option_strings}
    for f in dataclasses.fields(cls):
        if f.name in hand_written:
            flag = hand_written[f.name]
            assert any(flag in a.option_strings for a in by_dest.values()), f.name
            continue
        action = by_dest.get(f.name)
        assert action is not None, f"{cls.__name__}.{f.name} has no flag"
        assert action.help and action.help.strip(), f"{cls.__name__}.{f.name} has no help"


@pytest.mark.parametrize("command", _CONFIG_COMMANDS, ids=lambda c: " ".join(c[0]))
def test_parsing_the_required_arguments_gives_the_defaults(command: Any) -> None:
    import dataclasses

    from offrl.config import from_namespace

    names, target, _, required = command
    cls = _config_class(target)
    args = build_parser().parse_args([*names, *required])
    overrides: dict[str, Any] = {"algo_config": {}}
    if "imports" in {f.name for f in dataclasses.fields(cls)}:
        overrides["imports"] = args.imports
    got = from_namespace(cls, args, **overrides)
    if cls.__name__ == "GridSpec":
        assert got == cls(algos=["td3bc", "iql"], datasets=["pendulum-medium-v0"])
    else:
        assert got == cls(), cls.__name__  # the required ones are given their defaults


def test_existing_flag_spellings_still_work() -> None:
    from offrl.config import from_namespace
    from offrl.train import TrainConfig

    parser = build_parser()

    def cfg(*extra: str) -> TrainConfig:
        args = parser.parse_args(["train", "--algo", "bc", "--dataset", "d", *extra])
        return from_namespace(TrainConfig, args, algo_config={})

    base = cfg()
    assert base.norm_obs and base.progress and not base.cuda_graphs and not base.tensorboard
    c = cfg("--norm-obs", "0", "--no-progress", "--cuda-graphs", "--tensorboard", "--wandb")
    assert not c.norm_obs and not c.progress and c.cuda_graphs and c.tensorboard and c.wandb
    assert not cfg("--no-norm-obs").norm_obs and cfg("--norm-obs").norm_obs
    assert cfg("--norm-obs", "1").norm_obs and not cfg("--progress", "false").progress
    c = cfg("--env", "Hopper-v5", "--reward-mode", "return_range", "--threads", "3")
    assert c.env_id == "Hopper-v5" and c.reward_mode == "return_range" and c.threads == 3
    c = cfg("--out", "runs/x", "--steps", "7", "--data-fraction", "0.5", "--eval-seed", "3")
    assert (c.out, c.steps, c.data_fraction, c.eval_seed) == ("runs/x", 7, 0.5, 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--algo", "bc", "--dataset", "d", "--reward-mode", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--dataset", "d"])  # --algo stays required
    grid = parser.parse_args(
        ["bench", "run", "--algos", "bc", "--datasets", "a, b", "--seeds", "3,4", "--out", "o"]
    )
    assert grid.datasets == ["a", "b"] and grid.seeds == [3, 4]


def test_train_algo_help_lists_the_algorithms_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--algo", "td3bc", "--help"])
    out = capsys.readouterr().out
    assert "options of td3bc (TD3BCConfig; --set KEY=VALUE):" in out
    assert "    alpha = 2.5\n        Weight of the Q term relative to behaviour cloning" in out
    with pytest.raises(SystemExit):
        main(["online", "--help"])  # the default algorithm, SAC
    assert "options of sac (SACConfig" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help", "--algo", "no-such-algo"])
    assert "unknown algorithm 'no-such-algo'" in capsys.readouterr().out
