"""Fitted Q Evaluation (offrl.ope): it recovers the true discounted value of known policies,
continuous and discrete, ranks policies as their true returns do, and the worked example in
docs/ope.md runs as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from offrl.cli import main
from offrl.data import load_dataset
from offrl.errors import ConfigError, IncompatibleDataError
from offrl.ope import (
    FQE,
    FQEConfig,
    OPEReport,
    PolicyEstimate,
    discounted_return,
    effective_horizon,
    spearman,
)
from offrl.suite.builtin import pendulum_expert
from offrl.suite.rollout import rollout_dataset

ROOT = Path(__file__).resolve().parents[1]
# A small, fast fit (the defaults are d3rlpy's, for real decisions): gamma 0.95 keeps the
# effective horizon at ~60 steps, so 5,000 updates with a copy every 50 converge.
SMALL = FQEConfig(
    steps=5_000, gamma=0.95, hidden=(64, 64), batch_size=256, lr=3e-4, target_update_interval=50
)


def _damped_expert(c: float):  # noqa: ANN202 - a policy on raw observations
    """Pendulum's expert controller with its torque scaled by ``1 - c``: worse as c grows, and
    near the data of pendulum-medium-v0 (the expert with half its actions random)."""
    return lambda obs: np.clip(pendulum_expert(obs) * (1.0 - c), -2.0, 2.0)


@pytest.fixture(scope="module")
def pendulum_estimates() -> list[tuple[float, float]]:
    data = load_dataset("pendulum-medium-v0")
    out = []
    for c in (0.0, 0.3, 0.6, 0.9):
        fqe = FQE(_damped_expert(c), data, SMALL, env_id="Pendulum-v1")
        fqe.fit()
        truth, _ = discounted_return(_damped_expert(c), "Pendulum-v1", SMALL.gamma, episodes=100)
        out.append((fqe.estimate(), truth))
    return out


def test_fqe_recovers_the_true_value_of_known_policies(
    pendulum_estimates: list[tuple[float, float]],
) -> None:
    """Within 15 % of the true discounted return (100 rollouts; observed 2026-12-02: errors of
    4.7, 10.2, 4.7 and 1.4 %)."""
    for estimate, truth in pendulum_estimates:
        assert abs(estimate - truth) <= 0.15 * abs(truth), (estimate, truth)


def test_fqe_ranks_policies_as_their_true_returns(
    pendulum_estimates: list[tuple[float, float]],
) -> None:
    estimates, truths = zip(*pendulum_estimates, strict=True)
    assert list(truths) == sorted(truths, reverse=True)  # the family is ordered by c
    assert spearman(estimates, truths) == 1.0


def test_discrete_fqe_recovers_cartpole_values() -> None:
    """A balancing controller and a cruder one, evaluated on logs of the first with 30 % of
    its actions flipped: both within 10 % (observed 6 % and 5 %), and in the right order."""

    def balance(obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)

    def angle_only(obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] > 0).astype(np.int64)

    def noisy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = balance(obs)
        return np.where(rng.random(len(a)) < 0.3, 1 - a, a)

    data = rollout_dataset("CartPole-v1", noisy, episodes=40, seed=0)
    assert data.discrete
    found = []
    for policy in (balance, angle_only):
        fqe = FQE(policy, data, dataclasses_replace(SMALL, steps=4_000), env_id="CartPole-v1")
        fqe.fit()
        truth, _ = discounted_return(policy, "CartPole-v1", SMALL.gamma, episodes=50)
        assert abs(fqe.estimate() - truth) <= 0.10 * truth, (fqe.estimate(), truth)
        found.append(fqe.estimate())
    assert found[0] > found[1]


def dataclasses_replace(cfg: FQEConfig, **changes: object) -> FQEConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def test_one_update_is_the_regression_on_the_policys_fixed_targets() -> None:
    """The update regresses Q(s, a) on r + gamma (1 - done) Q_target(s', pi(s')), with pi(s')
    computed once and in the Q-network's action units, and the target a hard copy every
    target_update_interval updates."""
    data = load_dataset("pendulum-medium-v0")
    cfg = FQEConfig(steps=10, hidden=(16,), batch_size=8, target_update_interval=3, lr=1e-3)
    fqe = FQE(_damped_expert(0.0), data, cfg, env_id="Pendulum-v1")
    # pi(s') in [-1, 1]: Pendulum's torque bound is 2.
    expected = np.clip(pendulum_expert(data.next_observations[:5]), -2, 2) / 2.0
    np.testing.assert_allclose(fqe.next_actions[:5].numpy(), expected.reshape(5, 1), rtol=1e-6)
    state = fqe.sampler.state_dict()
    batch = fqe.sampler.sample()
    fqe.sampler.load_state_dict(state)
    q_before = {k: v.clone() for k, v in fqe.q.state_dict().items()}
    with torch.no_grad():
        nxt = fqe.q_values(batch.next_obs, fqe.next_actions[batch.rows], target=True).mean(0)
        target = batch.rewards + cfg.gamma * (1 - batch.dones) * nxt
        loss = ((fqe.q_values(batch.obs, batch.actions)[0] - target) ** 2).mean()
    metrics = fqe.update()
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-5)

    def target_is_q() -> bool:
        return all(
            torch.equal(fqe.q_target.state_dict()[k], v) for k, v in fqe.q.state_dict().items()
        )

    # d3rlpy's schedule: copied after updates 1, 4, 7, ... at an interval of 3
    assert target_is_q() and not all(
        torch.equal(fqe.q.state_dict()[k], q_before[k]) for k in q_before
    )
    fqe.update()
    assert not target_is_q()
    fqe.update()
    assert not target_is_q()
    fqe.update()
    assert target_is_q()


def test_spearman_and_effective_horizon_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their average rank: x ranks (0, 1.5, 1.5, 3), y ranks (0, 1, 2, 3)
    rx, ry = np.array([0, 1.5, 1.5, 3]), np.arange(4.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal-length"):
        spearman([1, 2], [1, 2, 3])
    assert effective_horizon(0.99) == 688 and 0.99**688 < 1e-3 <= 0.99**687
    report = OPEReport([PolicyEstimate("a", 1.0, 2.0), PolicyEstimate("b", 3.0, 1.0)], 0.9, 5)
    assert report.rank_correlation == pytest.approx(-1.0) and report.best().name == "b"
    assert OPEReport([PolicyEstimate("a", 1.0)], 0.9, 5).rank_correlation is None


def test_bad_options_and_data_are_refused() -> None:
    with pytest.raises(ConfigError, match="gamma"):
        FQEConfig(gamma=1.0)
    with pytest.raises(ConfigError, match="lr"):
        FQEConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="target_update_interval"):
        FQEConfig(target_update_interval=0)
    from offrl import get_algorithm
    from offrl.algos import EnvSpec

    algo = get_algorithm("bc")(EnvSpec((5,), 1), get_algorithm("bc").config_class(hidden=(8,)))
    with pytest.raises(IncompatibleDataError, match="observations"):
        FQE(algo, load_dataset("pendulum-medium-v0"))


def test_worked_example_in_the_docs_runs(tmp_path: Path) -> None:
    """docs/ope.md's example, run as written: FQE orders BC policies trained on random, medium
    and expert logs as their true returns, and would deploy the expert's."""
    text = (ROOT / "docs" / "ope.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    done = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + blocks[0]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "rank correlation: 1.0", done.stdout
    assert lines[-1] == "deploy: pendulum-expert-v0", done.stdout


def test_cli_reports_each_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for data in ("pendulum-random-v0", "pendulum-expert-v0"):
        out = tmp_path / data
        argv = [
            "train", "--algo", "bc", "--dataset", data, "--steps", "300", "--eval-every", "0",
            "--out", str(out), "--no-progress", "--set", "hidden=[32,32]",
        ]  # fmt: skip
        assert main(argv) == 0
        runs.append(str(out / "checkpoints" / "latest.pt"))
    report = tmp_path / "ope.json"
    argv = [
        "ope", "fqe", *runs, "--dataset", "pendulum-medium-v0", "--steps", "300",
        "--episodes", "3", "--out", str(report), "--set", "hidden=[32]", "batch_size=64",
    ]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads(report.read_text())
    assert [p["name"] for p in saved["policies"]] == runs
    assert all(isinstance(p["estimate"], float) for p in saved["policies"])
    assert all(isinstance(p["true_return"], float) for p in saved["policies"])
    assert saved["steps"] == 300 and saved["gamma"] == 0.99
    assert "rank correlation" in capsys.readouterr().out
    assert main([*argv[:-3], "--set", "nope=1"]) == 2
    assert "unknown FQE option" in capsys.readouterr().err
