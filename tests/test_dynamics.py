"""The dynamics ensemble (offrl.dynamics): its loss and soft bounds by hand, elites, that it
learns, that its artifact is reused, termination rules, and ``offrl model``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from offrl.cli import main
from offrl.data import Dataset, load_dataset
from offrl.dynamics import (
    DynamicsConfig,
    DynamicsEnsemble,
    fit_dynamics,
    fit_or_load,
    load_model,
    model_path,
    termination_fn,
)
from offrl.dynamics import fit as fit_module
from offrl.dynamics.fit import improved_members, select_elites
from offrl.dynamics.model import WEIGHT_DECAY
from offrl.errors import CheckpointError, ConfigError

SMALL = DynamicsConfig(model_hidden=(32, 32), model_max_epochs=3, model_epoch_steps=20)


def _toy(n: int = 600, seed: int = 0, env_id: str | None = "Pendulum-v1") -> Dataset:
    """A linear system s' = 0.9 s + 0.1 a, r = -|s|^2: a model learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    nxt = (0.9 * obs + 0.1 * act).astype(np.float32)
    return Dataset(
        observations=obs,
        actions=act,
        rewards=-(obs**2).sum(1).astype(np.float32),
        next_observations=nxt,
        terminals=np.zeros(n, bool),
        timeouts=(np.arange(n) % 100 == 99),
        env_id=env_id,
    )


def test_loss_by_hand() -> None:
    """Kit's loss: sum over members of mean((mu - y)^2 e^-logvar + logvar), the L2 decay, the
    bound term, and the done cross-entropy, on numbers computed here."""
    torch.manual_seed(0)
    model = DynamicsEnsemble(2, 1, hidden=(4,), ensemble=2, elites=1)
    obs, act = torch.randn(2, 3, 2), torch.rand(2, 3, 1) * 2 - 1
    targets, dones = torch.randn(2, 3, 3), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, _ = model.loss(obs, act, targets, dones, logvar_coef=0.01)
    out = model.net((torch.cat([obs, act], -1) - model.input_mean) / model.input_std)
    mu, raw, logit = out[..., :3], out[..., 3:6], out[..., 6]
    hi, lo = model.head.max_logvar, model.head.min_logvar
    lv = hi - torch.nn.functional.softplus(hi - raw)
    lv = lo + torch.nn.functional.softplus(lv - lo)
    nll = sum(((mu[i] - targets[i]) ** 2 * torch.exp(-lv[i]) + lv[i]).mean() for i in range(2))
    (w1, _), (w2, _) = model.net.layers()
    decay = WEIGHT_DECAY[0] * 0.5 * (w1**2).sum() + WEIGHT_DECAY[-1] * 0.5 * (w2**2).sum()
    bounds = 0.01 * (hi.sum() - lo.sum())
    p = torch.sigmoid(logit)
    bce = -(dones * p.log() + (1 - dones) * (1 - p).log()).sum() / 3
    torch.testing.assert_close(loss, nll + decay + bounds + bce)


def test_log_variance_is_soft_bounded() -> None:
    model = DynamicsEnsemble(1, 1, hidden=(4,), ensemble=1, elites=1)
    with torch.no_grad():
        w, b = model.net.layers()[-1]
        b[..., 2:4] = torch.tensor([100.0, -100.0])  # raw log-variance far outside the bounds
        _, log_var, _ = model(torch.zeros(5, 1), torch.zeros(5, 1))
    # Pinned at the initial bounds, 0.5 above and -10 below (within softplus(-10.5) = 2.8e-5).
    torch.testing.assert_close(log_var[..., 0], torch.full((1, 5), 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(log_var[..., 1], torch.full((1, 5), -10.0), atol=1e-4, rtol=0)


def test_elites_and_improvement_rule() -> None:
    assert select_elites([0.3, 0.1, 0.5, 0.1, 0.2], 3) == [1, 3, 4]
    # (old - new) / old > 1 %: 1.0 -> 0.98 improves (2 %), 1.0 -> 0.995 does not (0.5 %).
    assert improved_members([1.0, 1.0, 2.0], [0.98, 0.995, 3.0]) == [0]


def test_the_model_learns_pendulum() -> None:
    """On pendulum-medium-v0 the elites' held-out error ends far below predicting no change."""
    data = load_dataset("pendulum-medium-v0")
    cfg = DynamicsConfig(model_hidden=(64, 64), model_max_epochs=6, model_epoch_steps=200)
    fitted = fit_dynamics(data, cfg)
    summary = fitted.summary()
    assert summary["elite_holdout_mse"] < 0.05 * summary["baseline_mse"], summary
    assert sorted(summary["elites"]) == sorted(select_elites(fitted.holdout_mse, 5))
    assert summary["holdout_size"] == 1000 and summary["train_size"] == len(data) - 1000
    assert summary["termination"] == "rule"
    cal = summary["calibration"]  # the variances are of the right order (0.683 / 0.954 ideal)
    assert 0.3 < cal["within_1std"] < cal["within_2std"] <= 1.0, cal


def test_best_weights_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """After training each member is back at the weights of its best held-out error."""
    fitted = fit_dynamics(_toy(), DynamicsConfig(model_hidden=(16,), model_max_epochs=4))
    data = _toy()
    obs, act, targets, _ = fit_module.training_arrays(data)
    gen = torch.Generator().manual_seed(0)
    val = torch.randperm(len(data), generator=gen)[: fitted.holdout_size]
    errors = fitted.model.mean_error(obs[val], act[val], targets[val]).tolist()
    np.testing.assert_allclose(errors, fitted.holdout_mse, rtol=1e-5)


def test_artifact_is_reused_not_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _toy()
    first = fit_or_load(data, SMALL, root=tmp_path)
    assert not first.reused and first.path == model_path(data, SMALL, tmp_path)

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("trained again")

    monkeypatch.setattr(fit_module, "fit_dynamics", refuse)
    second = fit_or_load(data, SMALL, root=tmp_path)
    assert second.reused
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k
    # Other options or other data: another artifact.
    other = DynamicsConfig(model_hidden=(32, 32), model_max_epochs=2, model_epoch_steps=20)
    assert model_path(data, other, tmp_path) != first.path
    assert model_path(_toy(seed=1), SMALL, tmp_path) != first.path


def test_a_killed_fit_resumes_to_the_same_model(tmp_path: Path) -> None:
    """``fit_or_load`` keeps the fit's state after every epoch: a fit killed after epoch 2
    continues from it to the model of a fit never interrupted, bit for bit, and the state file
    goes once the model is saved. A damaged state file is ignored (the fit starts over)."""
    data = _toy()
    # 7 steps of 256 rows an epoch: each member's shuffle of its ~540 rows spans epochs.
    cfg = DynamicsConfig(model_hidden=(16, 16), model_max_epochs=5, model_epoch_steps=7)
    whole = fit_dynamics(data, cfg)

    class Killed(Exception):
        pass

    def kill_after_epoch_2(message: str) -> None:
        if message.startswith("dynamics model: epoch 2,"):
            raise Killed

    with pytest.raises(Killed):
        fit_or_load(data, cfg, progress=kill_after_epoch_2, root=tmp_path)
    path = model_path(data, cfg, tmp_path)
    partial = path.with_name(path.name + ".partial")
    assert partial.exists() and not path.exists()
    messages: list[str] = []
    resumed = fit_or_load(data, cfg, progress=messages.append, root=tmp_path)
    assert any(m.startswith("dynamics model: resuming after epoch 2") for m in messages)
    assert resumed.epochs == whole.epochs == 5
    assert resumed.holdout_mse == whole.holdout_mse
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert path.exists() and not partial.exists()

    path.unlink()
    partial.write_bytes(b"torn")
    again = fit_or_load(data, cfg, root=tmp_path)
    assert again.holdout_mse == whole.holdout_mse and not partial.exists()


def test_runs_started_together_train_the_model_once(tmp_path: Path) -> None:
    """Two processes asking for the same model: one trains it, the other waits and loads it."""
    from offrl.data import save_dataset

    save_dataset(_toy(), tmp_path / "toy.npz")
    code = (
        "import sys; from pathlib import Path; from offrl.data import load_dataset; "
        "from offrl.dynamics import DynamicsConfig, fit_or_load; "
        "cfg = DynamicsConfig(model_hidden=(32, 32), model_max_epochs=3, model_epoch_steps=20); "
        f"f = fit_or_load(load_dataset({str(tmp_path / 'toy.npz')!r}), cfg, "
        f"root=Path({str(tmp_path / 'models')!r})); print('reused' if f.reused else 'trained')"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=300)[0].strip() for p in procs)
    assert outs == ["reused", "trained"], outs


def test_damaged_artifact(tmp_path: Path) -> None:
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable offrl dynamics model"):
        load_model(bad)
    data = _toy()
    path = model_path(data, SMALL, tmp_path)
    path.write_bytes(b"junk")
    messages: list[str] = []
    fitted = fit_or_load(data, SMALL, messages.append, root=tmp_path)  # trained again
    assert not fitted.reused and any("training it again" in m for m in messages)
    assert load_model(path).reused


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="option model_elites"):
        DynamicsConfig(model_elites=0)
    with pytest.raises(ConfigError, match="option model_holdout"):
        DynamicsConfig(model_holdout=1.5)
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['model_size'\]"):
        DynamicsConfig.from_options({"model_size": 3})
    with pytest.raises(ValueError, match="elites"):
        DynamicsEnsemble(2, 1, ensemble=3, elites=4)


def test_step_draws_from_elites_only() -> None:
    torch.manual_seed(0)
    model = DynamicsEnsemble(2, 1, hidden=(8,), ensemble=3, elites=1)
    model.set_elites([2])
    with torch.no_grad():
        model.head.max_logvar.fill_(-30.0)  # (almost) no noise: the draw is the mean
        model.head.min_logvar.fill_(-40.0)
    obs, act = torch.randn(5, 2), torch.zeros(5, 1)
    nxt, rew, _, std = model.step(obs, act, torch.Generator().manual_seed(1))
    mean, _, _ = model(obs, act)
    torch.testing.assert_close(nxt, obs + mean[2, :, :2], atol=1e-5, rtol=0)
    torch.testing.assert_close(rew, mean[2, :, 2], atol=1e-5, rtol=0)
    assert std.shape == (3, 5, 3)
    samples = model.sample_next_obs(obs, act, 4, torch.Generator().manual_seed(1))
    assert samples.shape == (4, 1, 5, 2)


@pytest.mark.parametrize(
    ("env_id", "state", "done"),
    [
        ("Hopper-v5", [1.2, 0.1, 0, 0], False),
        ("hopper-medium-v0", [0.6, 0.1, 0, 0], True),  # fallen
        ("Hopper-v5", [1.2, 0.3, 0, 0], True),  # tilted
        ("Hopper-v5", [1.2, 0.1, -150, 0], True),  # |v| >= 100 (Kit: only from above)
        ("Walker2d-v5", [1.2, 0.5, 0, 0], False),
        ("Walker2d-v5", [2.1, 0.5, 0, 0], True),
        ("HalfCheetah-v5", [0, 50, 0, 0], False),
        ("HalfCheetah-v5", [0, 150, 0, 0], True),
        ("Pendulum-v1", [1e9, 0, 0, 0], False),
    ],
)
def test_termination_rules(env_id: str, state: list[float], done: bool) -> None:
    rule = termination_fn(env_id)
    assert rule is not None
    assert bool(rule(torch.tensor([state]))[0]) is done
    assert termination_fn("CartPole-v1") is None and termination_fn(None) is None


def test_cli_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from offrl.data import save_dataset

    data = tmp_path / "toy.npz"
    save_dataset(_toy(), data)
    args = ["--model-dir", str(tmp_path / "models"), "--set", "model_hidden=[16]"]
    args += ["model_max_epochs=2"]
    assert main(["model", "train", str(data), *args]) == 0
    out = capsys.readouterr().out
    trained = json.loads(out[out.index("\n{") :])
    assert trained["epochs"] == 2 and not trained["reused"] and len(trained["elites"]) == 5
    assert main(["model", "train", str(data), *args]) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and json.loads(out[out.index("\n{") :])["reused"]
    assert main(["model", "info", str(data), *args]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["holdout_mse"] == trained["holdout_mse"] and len(info["history"]) == 2
    assert main(["model", "info", "--path", str(tmp_path / "none.pt")]) == 2
    assert "not a readable offrl dynamics model" in capsys.readouterr().err
    assert main(["model", "train", str(data), "--set", "model_elites=0"]) == 2
    assert "option model_elites" in capsys.readouterr().err
    assert not math.isnan(trained["baseline_mse"])
