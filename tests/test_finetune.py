"""Offline-to-online fine-tuning: the mixing rules, Balanced Replay's density ratio and
ensemble, Cal-QL's calibration and exact resume (the learning tests are in
tests/test_learning_finetune.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import BalancedReplay, CalQL, get_algorithm
from offrl.algos.base import EnvSpec
from offrl.data.dataset import Dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import Batch, TensorSampler
from offrl.errors import ConfigError
from offrl.losses import density_ratio_loss
from offrl.nn import MixtureTanhGaussianPolicy
from offrl.train.finetune import FinetuneConfig, finetune, finetune_summary
from offrl.train.loggers import read_metrics
from offrl.train.mixing import BalancedSampler, MixedSampler, OnlineRows, offline_share

OBS = 3


def _offline(n: int = 300, obs_loc: float = 0.0, seed: int = 0) -> Dataset:
    """``n`` transitions in episodes of 50, rewards 0 (online ones will be 1)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(obs_loc, 1.0, (n, OBS)).astype(np.float32)
    ends = np.arange(n) % 50 == 49
    return Dataset(
        observations=obs,
        actions=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rewards=np.zeros(n, np.float32),
        next_observations=obs + 0.1,
        terminals=np.zeros(n, bool),
        timeouts=ends,
    )


def _buffer(n: int, obs_loc: float = 0.0, seed: int = 1, capacity: int = 1000) -> ReplayBuffer:
    """``n`` online transitions with raw actions in [-2, 2] and rewards 1."""
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(capacity, (OBS,), 1, np.array([-2.0]), np.array([2.0]))
    if n:
        obs = rng.normal(obs_loc, 1.0, (n, OBS)).astype(np.float32)
        buf.add(
            obs,
            rng.uniform(-2, 2, (n, 1)).astype(np.float32),
            np.ones(n, np.float32),
            obs + 0.1,
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.arange(n) // 20,
        )
    return buf


def _mixer(rule: str, n_on: int, **kw: Any) -> MixedSampler:
    offline = TensorSampler(_offline(), 64, seed=0)
    online = OnlineRows(_buffer(n_on), ObsNormalizer(np.zeros(OBS), np.ones(OBS)), 1.0, 0.0)
    return MixedSampler(offline, online, rule, 64, seed=3, **kw)


def _n_offline(batch: Batch) -> int:
    return int((batch.rewards == 0).sum())


# ------------------------------------------------------------------ mixing rules
def test_ratio_rule_gives_the_exact_share() -> None:
    mixer = _mixer("ratio", 100, offline_ratio=0.25)
    for step in (1, 50, 10_000):
        batch = mixer.sample(step)
        assert len(batch.rewards) == 64 and _n_offline(batch) == 16
        assert torch.all(batch.rewards[:16] == 0) and torch.all(batch.rewards[16:] == 1)


def test_anneal_rule_follows_its_linear_schedule() -> None:
    shares = [offline_share("anneal", s, 0.8, 0.2, 100) for s in (0, 25, 50, 100, 1000)]
    assert shares == pytest.approx([0.8, 0.65, 0.5, 0.2, 0.2])
    mixer = _mixer("anneal", 100, offline_ratio=0.8, final_offline_ratio=0.2, anneal_steps=100)
    counts = [_n_offline(mixer.sample(s)) for s in (0, 50, 100, 400)]
    assert counts == [round(64 * 0.8), 32, round(64 * 0.2), round(64 * 0.2)]


def test_keep_rule_samples_uniformly_over_the_union() -> None:
    """300 offline and 100 online transitions: three quarters of the rows are offline."""
    mixer = _mixer("keep", 100)
    share = np.mean([_n_offline(mixer.sample(1)) / 64 for _ in range(2000)])
    assert share == pytest.approx(0.75, abs=0.01)


def test_drop_rule_uses_online_data_once_there_is_any() -> None:
    assert _n_offline(_mixer("drop", 0).sample(0)) == 64  # nothing online yet
    assert _n_offline(_mixer("drop", 10).sample(1)) == 0


def test_online_rows_are_transformed_like_the_offline_data() -> None:
    buf = _buffer(40)
    mean, std = np.full(OBS, 0.5), np.full(OBS, 2.0)
    rows = OnlineRows(buf, ObsNormalizer(mean, std), reward_a=3.0, reward_b=-1.0)
    idx = np.array([0, 7, 39])
    batch = rows.batch(idx, torch.device("cpu"))
    assert np.allclose(batch.obs.numpy(), (buf.obs[idx] - 0.5) / 2.0)
    assert np.allclose(batch.rewards.numpy(), 3.0 * 1.0 - 1.0)
    assert np.allclose(batch.actions.numpy(), buf.actions[idx] / 2.0)  # [-2, 2] -> [-1, 1]
    # The next action of the same episode (episodes of 20; row 39 ends the data: its own).
    assert np.allclose(batch.next_actions.numpy()[:2], buf.actions[[1, 8]] / 2.0)
    assert np.allclose(batch.next_actions.numpy()[2], buf.actions[39] / 2.0)
    assert torch.isnan(batch.returns_to_go).all()  # no episode has ended


def test_sampling_leaves_both_sources_untouched() -> None:
    data = _offline()
    copy = {k: np.copy(getattr(data, k)) for k in ("observations", "actions", "rewards")}
    offline = TensorSampler(data, 64, seed=0)
    packed = offline.data.clone()
    buf = _buffer(100)
    online_copy = (buf.obs.copy(), buf.actions.copy(), buf.rewards.copy())
    mixer = MixedSampler(
        offline,
        OnlineRows(buf, ObsNormalizer(np.zeros(OBS), np.ones(OBS)), 2.0, 1.0),
        "ratio",
        64,
        0,
    )
    for step in range(50):
        mixer.sample(step)
    assert torch.equal(offline.data, packed)
    for k, v in copy.items():
        assert np.array_equal(getattr(data, k), v)
    for before, after in zip(online_copy, (buf.obs, buf.actions, buf.rewards), strict=True):
        assert np.array_equal(before, after)


def test_mix_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="option mix"):
        FinetuneConfig(init=("x",), mix="sometimes")
    with pytest.raises(ConfigError, match="offline_ratio"):
        FinetuneConfig(init=("x",), offline_ratio=1.5)
    with pytest.raises(ConfigError, match="option init"):
        FinetuneConfig(dataset="pendulum-medium-v0")  # neither init nor offline_steps


# ------------------------------------------------------------------ Balanced Replay
def test_density_ratio_loss_is_minimised_at_the_true_ratio() -> None:
    """Per point, ``-p_off log(2 / (w + 1)) - p_on log(2w / (w + 1))`` is smallest at
    ``w = p_on / p_off`` (hand-computed for p_off = 0.25, p_on = 0.75: w* = 3)."""
    ws = torch.linspace(0.1, 10.0, 9901)
    loss = 0.25 * -torch.log(2.0 / (ws + 1.0)) - 0.75 * torch.log(2.0 * ws / (ws + 1.0))
    assert float(ws[loss.argmin()]) == pytest.approx(3.0, abs=0.01)
    w = torch.tensor([3.0])
    assert float(density_ratio_loss(w, w)) == pytest.approx(
        -math.log(2.0 / 4.0) - math.log(6.0 / 4.0)
    )


def test_balanced_sampler_learns_a_known_density_ratio() -> None:
    """Offline states ~ N(0, 1), online ~ N(1, 1) in the first dimension (the rest and the
    actions alike): ``d_on / d_off = exp(s_0 - 1/2)``. The sampler's estimator learns it, and
    its priorities favour the online-like transitions."""
    rng = np.random.default_rng(0)
    n = 20_000
    obs = rng.normal(0.0, 1.0, (n, OBS)).astype(np.float32)
    data = Dataset(
        observations=obs,
        actions=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rewards=np.zeros(n, np.float32),
        next_observations=obs,
        terminals=np.zeros(n, bool),
        timeouts=np.arange(n) % 100 == 99,
    )
    buf = ReplayBuffer(n, (OBS,), 1, np.array([-1.0]), np.array([1.0]))
    on_obs = rng.normal(0.0, 1.0, (n, OBS)).astype(np.float32)
    on_obs[:, 0] += 1.0
    buf.add(
        on_obs,
        rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        np.ones(n, np.float32),
        on_obs,
        np.zeros(n, bool),
        np.zeros(n, bool),
        np.arange(n) // 100,
    )
    rows = OnlineRows(buf, ObsNormalizer(np.zeros(OBS), np.ones(OBS)), 1.0, 0.0)
    sampler = BalancedSampler(TensorSampler(data, 256, seed=0), rows, 256, seed=0, hidden=(64, 64))
    shares = [float((sampler.sample(1).rewards == 1).float().mean()) for _ in range(1500)]
    # Where both distributions have mass (observed: within 0.22 in log; at s_0 = -1, where
    # online samples are rare, 0.45).
    s0 = torch.tensor([0.0, 0.5, 1.0, 1.5])
    probe = torch.zeros(len(s0), OBS)
    probe[:, 0] = s0
    learned = sampler.ratio(probe, torch.zeros(len(s0), 1)).detach()
    truth = torch.exp(s0 - 0.5)
    assert torch.allclose(learned.log(), truth.log(), atol=0.3), (learned, truth)
    # Half the pool is online. With priorities w^(1/T), T = 5, the online share tends to
    # E_on[w^0.2] / (E_on[w^0.2] + E_off[w^0.2]) = e^0.12 / (e^0.12 + e^-0.08) = 0.550
    # (E[e^(0.2 s)] = e^(0.2 mu + 0.02) for s ~ N(mu, 1)).
    assert np.mean(shares[:20]) == pytest.approx(0.5, abs=0.03)
    assert np.mean(shares[-200:]) == pytest.approx(0.550, abs=0.015)


def test_mixture_policy_matches_the_moments_of_its_members() -> None:
    torch.manual_seed(0)
    pi = MixtureTanhGaussianPolicy(OBS, 2, (16,), members=3)
    obs = torch.randn(5, OBS)
    mu_i, log_std_i = pi.head.params(pi.net(obs))
    mu, log_std = pi._params(obs)
    # Hand-computed: mean of means; E[x^2] - mean^2 of the equal-weight mixture.
    second = (mu_i**2 + log_std_i.exp() ** 2).mean(0)
    assert torch.allclose(mu, mu_i.mean(0))
    assert torch.allclose(log_std.exp() ** 2, second - mu_i.mean(0) ** 2, rtol=1e-5)
    assert torch.allclose(pi(obs), torch.tanh(mu))


def test_balanced_replay_is_built_from_its_members() -> None:
    """Member i's critics become critics 2i, 2i + 1; each member's policy one mixture member;
    the critic target is each member's own clipped double Q."""
    spec = EnvSpec((OBS,), 1, action_low=(-2.0,), action_high=(2.0,))
    cql = get_algorithm("cql")
    members = [cql(spec, cql.config_class(hidden=(16, 16)), seed=i) for i in range(3)]
    algo = BalancedReplay.from_members(members)
    obs, act = torch.randn(7, OBS), torch.rand(7, 1) * 2 - 1
    for i, m in enumerate(members):
        assert torch.allclose(algo.critic(obs, act)[2 * i : 2 * i + 2], m.critic(obs, act))
        assert torch.allclose(algo.actor.net(obs)[i], m.actor.net(obs)[0])
    q = algo.critic(obs, act)
    assert torch.allclose(algo.actor_q(obs, act), q.view(3, 2, -1).amin(1).mean(0))
    batch = Batch(obs, act, torch.ones(7), obs, torch.zeros(7))
    state = algo.generator.get_state()
    target = algo.soft_target(batch)
    algo.generator.set_state(state)
    next_a, logp = algo.actor.sample(obs, generator=algo.generator)
    q_next = algo.critic_target(obs, next_a).view(3, 2, -1).amin(1)
    expected = 1.0 + 0.99 * (q_next - algo.alpha() * logp)
    assert torch.allclose(target, expected.repeat_interleave(2, dim=0))
    with pytest.raises(ValueError, match="other data"):
        other = cql(spec, cql.config_class(hidden=(16, 16)), seed=9)
        other.obs_mean = torch.ones(OBS)
        BalancedReplay.from_members([members[0], other])


# ------------------------------------------------------------------ Cal-QL
def test_calql_floors_the_policy_values_at_the_returns_to_go() -> None:
    """With every Q equal to c, CQL's gap per critic is ``logsumexp(c - log mu_j) - c``;
    Cal-QL's replaces c by ``max(c, G)`` for the policy's samples (not the uniform ones).
    Recomputed here from the same random draws."""
    spec = EnvSpec((OBS,), 2)
    cfg = CalQL.config_class(hidden=(8,), num_samples=3)
    algo = CalQL(spec, cfg, seed=0)
    c = 2.0
    with torch.no_grad():
        w, b = algo.critic.net.layers()[-1]
        w.zero_()
        b.fill_(c)
    obs = torch.randn(4, OBS)
    rtg = torch.tensor([10.0, -5.0, float("nan"), 2.5])  # above, below, unknown, above
    batch = Batch(obs, torch.zeros(4, 2), torch.zeros(4), obs, torch.zeros(4), returns_to_go=rtg)
    state = algo.generator.get_state()
    _, info = algo.critic_loss(batch)
    algo.generator.set_state(state)
    k, n = 3, 4
    torch.rand((k * n, 2), generator=algo.generator)  # the uniform actions (values: c)
    _, pi_logp = algo.actor.sample(obs, algo.generator, n=k)
    _, next_logp = algo.actor.sample(obs, algo.generator, n=k)
    floor = torch.tensor([10.0, c, c, 2.5])  # max(c, G); nan: no floor
    uniform = torch.full((k, n), c + 2 * math.log(2.0))
    policy = torch.cat([floor - pi_logp.view(k, n), floor - next_logp.view(k, n)])
    gap = torch.logsumexp(torch.cat([uniform, policy]), 0) - c
    assert float(info["cql_gap"]) == pytest.approx(float(gap.detach().mean()), rel=1e-5)
    assert float(info["calibration_rate"]) == pytest.approx(0.5)  # rows 0 and 3: c < G
    with pytest.raises(ValueError, match="returns_to_go"):
        algo.critic_loss(batch._replace(returns_to_go=None))


def test_dataset_returns_reach_calql_batches() -> None:
    data = _offline(100)
    data.rewards[:] = 1.0
    sampler = TensorSampler(data, 16, seed=0, returns_gamma=0.5)
    batch = sampler.sample()
    # Episodes of 50 with reward 1: G_t = sum_{k < 50 - t} 0.5^k = 2 (1 - 0.5^(50 - t)).
    pos = batch.rows.numpy() % 50
    assert np.allclose(batch.returns_to_go.numpy(), 2.0 * (1.0 - 0.5 ** (50 - pos)), rtol=1e-6)


def test_finetune_summary_metrics() -> None:
    records = [
        {"kind": "eval", "step": s, "eval/normalized_score": v}
        for s, v in [(0, 60.0), (5000, 40.0), (10_000, 70.0), (30_000, 20.0), (40_000, 90.0)]
    ]
    returns = [-300.0, -200.0]  # Pendulum: normalised with its reference returns
    out = finetune_summary(returns, records, "Pendulum-v1", drop_window=20_000)
    assert out["offline_score"] == 60.0 and out["online_score"] == 90.0
    assert out["worst_early_score"] == 40.0 and out["initial_drop"] == 20.0
    from offrl.scores import normalized_score

    norm = [normalized_score("Pendulum-v1", r) for r in returns]
    assert out["regret"] == pytest.approx(np.mean([1 - x / 100 for x in norm]))


# ------------------------------------------------------------------ runs
def _cfg(tmp_path: Path, **kw: Any) -> FinetuneConfig:
    base: dict[str, Any] = dict(
        dataset="pendulum-medium-v0",
        offline_steps=200,
        steps=300,
        eval_every=150,
        eval_episodes=1,
        checkpoint_every=150,
        offline_eval_every=200,
        buffer_size=1000,
        progress=False,
        out=str(tmp_path / "run"),
        final_eval_episodes=0,
        algo_config={"hidden": (16, 16), "batch_size": 32},
    )
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("algo", ["iql", "rebrac", "balanced_replay"])
def test_killed_finetune_resumes_to_the_same_result(tmp_path: Path, algo: str) -> None:
    """A run stopped at its checkpoint (step 150) and resumed ends with the same networks,
    buffer, priorities and scores as one that ran through (ReBRAC: its online schedule too)."""
    extra: dict[str, Any] = {}
    if algo == "rebrac":  # its BC weight decays over the 300 steps, in both runs
        extra = {"anneal_steps": 300}
    if algo == "balanced_replay":
        extra = {"algo_config": {"hidden": (16, 16), "batch_size": 32, "members": 2}}
    whole = finetune(_cfg(tmp_path / "a", algo=algo, **extra))
    finetune(_cfg(tmp_path / "b", algo=algo, steps=150, **extra))
    resumed = finetune(
        _cfg(tmp_path / "b", algo=algo, **extra), resume=True, allow_changes=("steps",)
    )
    for key in ("offline_score", "online_score", "online_episode_returns", "return_mean"):
        assert whole[key] == resumed[key], key
    from offrl.train.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "latest.pt")
    for name in ("actor", "critic"):
        for k, v in a["algo"][name].items():
            assert torch.equal(v, b["algo"][name][k]), (name, k)
    assert torch.equal(a["buffer"]["obs"], b["buffer"]["obs"])
    if algo == "balanced_replay":
        assert torch.equal(a["sampler"]["tree"]["priorities"], b["sampler"]["tree"]["priorities"])
    config = json.loads((tmp_path / "b" / "run" / "config.json").read_text())
    mix = {"iql": "keep", "rebrac": "ratio", "balanced_replay": "balanced"}[algo]
    assert config["finetune"]["mix"] == mix


def test_finetune_ends_with_a_final_evaluation(tmp_path: Path) -> None:
    """As ``offrl train``: the fine-tuned policy's many-episode evaluation, every episode kept,
    logged once; resuming the finished run repeats it (same seeds, same scores) without a
    second record."""
    final = finetune(_cfg(tmp_path, algo="iql", steps=150, final_eval_episodes=4))
    ev = final["final_eval"]
    assert ev["episodes"] == 4 and len(ev["returns"]) == len(ev["normalized"]) == 4
    assert ev["return_mean"] == pytest.approx(np.mean(ev["returns"]))
    again = finetune(_cfg(tmp_path, algo="iql", steps=150, final_eval_episodes=4), resume=True)
    assert again["final_eval"]["returns"] == ev["returns"]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    logged = [r for r in records if r["kind"] == "final_eval"]
    assert len(logged) == 1 and logged[0]["step"] == 150
    assert logged[0]["final_eval/return_mean"] == pytest.approx(ev["return_mean"])
    saved = json.loads((tmp_path / "run" / "final.json").read_text())
    assert saved["final_eval"]["returns"] == ev["returns"]


def test_finetune_starts_from_an_existing_run(tmp_path: Path) -> None:
    """``init`` takes an offline run directory; its algorithm must match."""
    from offrl.train.trainer import TrainConfig, train

    off = tmp_path / "offline"
    train(
        TrainConfig(
            algo="calql",
            dataset="pendulum-medium-v0",
            steps=50,
            out=str(off),
            eval_every=0,
            eval_episodes=1,
            final_eval_episodes=0,
            progress=False,
            algo_config={"hidden": (16, 16), "batch_size": 32, "num_samples": 2},
        )
    )
    with pytest.raises(ConfigError, match="trained calql"):
        finetune(_cfg(tmp_path, algo="iql", init=(str(off),), offline_steps=0, dataset=""))
    final = finetune(_cfg(tmp_path, algo="calql", init=(str(off),), steps=150, dataset=""))
    assert final["status"] == "completed" and final["online_episodes"] == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["finetune"]["mix"] == "ratio"
    assert (tmp_path / "run" / "curve.png").exists()


def test_finetune_command(tmp_path: Path) -> None:
    """``offrl finetune`` trains offline, then online, and prints the fine-tuning metrics."""
    from offrl.cli import main

    out = tmp_path / "cli"
    args = ["finetune", "--algo", "td3bc", "--dataset", "pendulum-medium-v0"]
    args += ["--offline-steps", "100", "--steps", "200", "--eval-every", "200"]
    args += ["--eval-episodes", "1", "--offline-eval-every", "100", "--checkpoint-every", "100"]
    args += ["--mix", "anneal", "--offline-ratio", "0.75", "--buffer-size", "500"]
    args += ["--out", str(out), "--no-progress", "--set", "hidden=[16,16]", "batch_size=32"]
    assert main(args) == 0
    final = json.loads((out / "final.json").read_text())
    assert {"offline_score", "online_score", "initial_drop", "regret"} <= set(final)
    assert json.loads((out / "config.json").read_text())["finetune"]["mix"] == "anneal"
    assert (out / "offline" / "final.json").exists() and (out / "curve.png").exists()
    assert main(args) == 2  # the run exists: --resume


def test_bench_grid_of_finetuning_cells(tmp_path: Path) -> None:
    """``offrl bench run --online-steps N``: each cell trains offline, then fine-tunes; the
    report adds the before -> after table and its commands are ``offrl finetune``."""
    from offrl.bench.report import write_report
    from offrl.cli import main

    out = tmp_path / "grid"
    args = ["bench", "run", "--algos", "iql,td3bc", "--datasets", "pendulum-medium-v0"]
    args += ["--seeds", "0", "--steps", "100", "--eval-every", "100", "--eval-episodes", "1"]
    args += ["--checkpoint-every", "100", "--online-steps", "200", "--online-mix", "ratio"]
    args += ["--final-eval-episodes", "3"]
    args += ["--out", str(out), "--set", "iql.hidden=[16,16]", "td3bc.hidden=[16,16]"]
    assert main(args) == 0
    report = write_report(out, reps=20)
    md = (out / "REPORT.md").read_text()
    assert "## Offline-to-online" in md and "| pendulum-medium-v0 | iql |" in md
    assert "after 100 offline updates and 200 online steps" in md  # the budget, both phases
    assert "offrl finetune --algo td3bc" in md and "--mix ratio" in md
    cell = next(c for c in report["cells"] if c["algo"] == "iql")
    assert set(cell["finetune"]) == {"offline_score", "online_score", "initial_drop", "regret"}
    final = json.loads((out / "pendulum-medium-v0" / "iql" / "s0" / "final.json").read_text())
    assert final["steps"] == 200 and final["offline_score"] == cell["finetune"]["offline_score"]
    assert "--final-eval-episodes 3" in md and len(final["final_eval"]["returns"]) == 3
    assert all(len(ev["final_eval"]["means"]) == 1 for ev in report["evaluation"])
