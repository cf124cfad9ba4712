"""Export (offrl.export, ``offrl export``): the TorchScript and ONNX files of every algorithm act
as ``Algorithm.act`` does, run in a fresh process where offrl cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import Algorithm, EnvSpec, get_algorithm, list_algorithms
from offrl.cli import main
from offrl.data import Dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import TensorSampler
from offrl.export import ExportError, deployed_policy, export_policy, format_for
from offrl.train.checkpoint import save_checkpoint

pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

OBS_DIM, ACT_DIM = 7, 3
# Asymmetric bounds: the rescaling inside the file must be the environment's, per dimension.
SPEC = EnvSpec((OBS_DIM,), ACT_DIM, action_low=(-1.0, -2.0, 0.0), action_high=(1.0, 0.5, 4.0))
SMALL = {"hidden": (32, 32), "batch_size": 32}
# Options that let a few updates reach every network (AWR's value snapshot, BEAR's warm-up).
_MODEL_BASED = {"model_hidden": (16,), "model_max_epochs": 2, "rollout_batch_size": 40}
OPTIONS: dict[str, dict[str, Any]] = {
    "awr": {"recompute_every": 2},
    "bear": {"warmup_steps": 1},
    "uwac": {"warmup_steps": 1},
    "mopo": _MODEL_BASED,
    "combo": _MODEL_BASED,
    "mobile": _MODEL_BASED,
}
CONTINUOUS = [n for n in list_algorithms() if "continuous" in get_algorithm(n).action_kinds]
FRESH = textwrap.dedent(
    """
    import json, sys
    sys.modules["offrl"] = None  # offrl must not be importable in this process
    try:
        import offrl  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("offrl was importable")
    import numpy as np, onnxruntime, torch
    obs = np.load("obs.npy")
    out, meta = {}, {}
    for name in json.load(open("names.json")):
        extra = {"offrl.json": ""}
        ts = torch.jit.load(f"{name}.pt", _extra_files=extra)
        with torch.no_grad():
            out[f"{name}/torchscript"] = ts(torch.from_numpy(obs)).numpy()
        text = extra["offrl.json"]
        meta[f"{name}/torchscript"] = json.loads(text.decode() if isinstance(text, bytes) else text)
        session = onnxruntime.InferenceSession(f"{name}.onnx", providers=["CPUExecutionProvider"])
        out[f"{name}/onnx"] = session.run(None, {"obs": obs})[0]
        props = session.get_modelmeta().custom_metadata_map
        meta[f"{name}/onnx"] = {k: json.loads(v) for k, v in props.items()}
    np.savez("out.npz", **out)
    json.dump(meta, open("meta.json", "w"))
    """
)


def _dataset(n: int = 400, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        observations=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        terminals=rng.random(n) < 0.05,
        timeouts=np.zeros(n, dtype=bool),
    )


def _trained(name: str, updates: int = 4, seed: int = 0) -> Algorithm:
    """``name`` after a few updates on random data, with observation statistics far from
    (0, 1), so that normalisation, the networks and the rescaling all shape the actions."""
    cls = get_algorithm(name)
    algo = cls(SPEC, cls.config_class.from_dict({**SMALL, **OPTIONS.get(name, {})}), seed=seed)
    data = algo.prepare_data(_dataset())
    algo.attach_data(data)
    sampler = TensorSampler(data, algo.config.batch_size, seed=1, **algo.sampler_options())
    for _ in range(updates):
        algo.update(sampler.sample())
    rng = np.random.default_rng(seed + 1)
    mean = rng.normal(0, 3, OBS_DIM).astype(np.float32)
    std = rng.uniform(0.2, 4.0, OBS_DIM).astype(np.float32)
    algo.set_normalizer(ObsNormalizer(mean, std))
    return algo


def _observations(algo: Algorithm, n: int = 257) -> np.ndarray:
    """Observations spread over the stored statistics: many actions reach the bounds."""
    rng = np.random.default_rng(7)
    mean, std = algo.obs_mean.numpy(), algo.obs_std.numpy()
    return (mean + 3 * std * rng.standard_normal((n, OBS_DIM))).astype(np.float32)


def test_every_continuous_algorithm_exports_to_files_that_act_as_act(tmp_path: Path) -> None:
    """Both files of each algorithm, run in a process without offrl, give ``Algorithm.act``'s
    actions to 1e-5 on a batch (another size than the one traced), within the env's bounds."""
    assert len(CONTINUOUS) >= 18
    expected: dict[str, np.ndarray] = {}
    algos: dict[str, Algorithm] = {}
    obs = None
    for name in CONTINUOUS:
        algo = algos[name] = _trained(name)
        obs = _observations(algo) if obs is None else obs
        expected[name] = algo.act(obs)
        export_policy(algo, tmp_path / f"{name}.pt", env_id="Test-v0")
        export_policy(algo, tmp_path / f"{name}.onnx", env_id="Test-v0")
    assert obs is not None
    np.save(tmp_path / "obs.npy", obs)
    (tmp_path / "names.json").write_text(json.dumps(CONTINUOUS))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", FRESH], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    metas = json.loads((tmp_path / "meta.json").read_text())
    low, high = np.array(SPEC.action_low), np.array(SPEC.action_high)
    for name in CONTINUOUS:
        want = expected[name]
        assert want.shape == (len(obs), ACT_DIM)
        assert np.ptp(want, axis=0).min() > 1e-3, f"{name}: actions barely vary"
        for fmt in ("torchscript", "onnx"):
            got = out[f"{name}/{fmt}"]
            assert got.shape == want.shape, (name, fmt)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{name} {fmt}")
            assert (got >= low - 1e-6).all() and (got <= high + 1e-6).all()
        for meta in (metas[f"{name}/torchscript"], metas[f"{name}/onnx"]):
            assert meta["algo"] == name and meta["env_id"] == "Test-v0"
            assert meta["obs_shape"] == [OBS_DIM] and meta["action_high"] == list(high)
            assert meta["num_updates"] == algos[name].num_updates


@pytest.mark.parametrize("name", ["bcq", "bear"])
def test_sampling_policies_export_the_checkpoints_draws(name: str) -> None:
    """BCQ and BEAR act by scoring sampled actions; ``act`` puts the generator back, so the
    export holds that state's draws and acts the same on every batch, row by row."""
    algo = _trained(name)
    obs = torch.as_tensor(_observations(algo, 50))
    module = deployed_policy(algo)
    first = algo.act(obs.numpy())
    np.testing.assert_allclose(algo.act(obs.numpy()), first, atol=0)  # act is repeatable
    with torch.no_grad():
        whole = module(obs).numpy()
        rows = np.concatenate([module(obs[i : i + 1]).numpy() for i in range(5)])
    np.testing.assert_allclose(whole, first, atol=1e-6)
    np.testing.assert_allclose(rows, first[:5], atol=1e-6)  # a row's action: batch-independent


def test_export_leaves_the_algorithm_untouched() -> None:
    algo = _trained("td3bc")
    before = {k: v.clone() for k, v in algo.actor.state_dict().items()}
    state = algo.generator.get_state()
    deployed_policy(algo)
    assert all(p.requires_grad for p in algo.actor.parameters())
    assert torch.equal(algo.generator.get_state(), state)
    for k, v in algo.actor.state_dict().items():
        assert torch.equal(v, before[k])
    algo.update(  # still trains
        TensorSampler(algo.prepare_data(_dataset()), algo.config.batch_size, seed=3).sample()
    )


# ---------------------------------------------------------------------- discrete policies
DISCRETE_ONLY = [n for n in list_algorithms() if "continuous" not in get_algorithm(n).action_kinds]


@pytest.mark.parametrize("frames", [True, False], ids=["frames", "vector"])
@pytest.mark.parametrize("name", DISCRETE_ONLY)
def test_discrete_policy_exports_indices(tmp_path: Path, name: str, frames: bool) -> None:
    """QR-DQN, discrete BCQ / CQL / CRR: ``uint8`` frames (MinAtar's size, the bytes as the
    algorithm acts on them) or normalised vectors in, action indices out, as ``act``."""
    rng = np.random.default_rng(0)
    cls = get_algorithm(name)
    options = {"hidden": (16,), "num_quantiles": 8} if name in ("qrdqn", "discrete_cql") else {}
    shape = (4, 10, 10) if frames else (OBS_DIM,)
    algo = cls(EnvSpec(shape, 5, discrete=True), cls.config_class.from_dict(options), seed=3)
    if frames:
        obs = (rng.random((100, *shape)) < 0.1).astype(np.uint8) * 255
    else:
        algo.set_normalizer(
            ObsNormalizer(np.full(OBS_DIM, 2, np.float32), np.full(OBS_DIM, 3, np.float32))
        )
        obs = (rng.standard_normal((100, OBS_DIM)) * 6).astype(np.float32)
    want = algo.act(obs)
    export_policy(algo, tmp_path / "q.onnx", check_obs=obs)
    export_policy(algo, tmp_path / "q.pt", check_obs=obs)
    session = onnxruntime.InferenceSession(str(tmp_path / "q.onnx"))
    got = session.run(None, {"obs": obs})[0]
    assert got.dtype == np.int64 and np.array_equal(got, want)
    ts = torch.jit.load(str(tmp_path / "q.pt"))
    assert np.array_equal(ts(torch.from_numpy(obs)).numpy(), want)


# ---------------------------------------------------------------------- checks and the command
def test_an_export_that_does_not_act_as_act_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import offrl.export as export

    algo = _trained("iql")
    out = tmp_path / "p.pt"
    monkeypatch.setattr(export, "_run_torchscript", lambda path, obs: algo.act(obs) + 1e-3)
    with pytest.raises(ExportError, match=r"differ from Algorithm.act's by up to 0.001"):
        export_policy(algo, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no file, no temporary left


def test_format_from_suffix_or_option() -> None:
    assert format_for("a/policy.onnx") == "onnx"
    assert format_for("policy.pt") == "torchscript"
    assert format_for("policy.bin", "onnx") == "onnx"
    with pytest.raises(ExportError, match="format: cannot tell"):
        format_for("policy.bin")
    with pytest.raises(ExportError, match="format: 'tflite' is not one of"):
        format_for("policy.pt", "tflite")


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    algo = _trained("td3bc")
    ckpt = tmp_path / "latest.pt"
    save_checkpoint(ckpt, {"algo": algo.state_dict(), "step": 4, "env_id": "Hopper-v5"})
    out = tmp_path / "deploy" / "policy.onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["env_id"]) == "Hopper-v5" and json.loads(meta["algo"]) == "td3bc"
    obs = _observations(algo)
    np.testing.assert_allclose(session.run(None, {"obs": obs})[0], algo.act(obs), atol=1e-5)
    ts = tmp_path / "policy.bin"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(ts)]) == 0
    assert torch.jit.load(str(ts))(torch.from_numpy(obs)).shape == (len(obs), ACT_DIM)


def test_cli_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "not a readable offrl checkpoint" in capsys.readouterr().err
    assert main(["export", str(bad), "--out", str(tmp_path / "p.zip")]) == 2
    assert "format: cannot tell the format" in capsys.readouterr().err
    assert not (tmp_path / "p.onnx").exists()
