"""The Algorithm contract for the discrete-action algorithms (frames and vectors), and their
losses by hand: the quantile Huber loss, discrete BCQ's action filter, CQL's log-sum-exp
penalty, CRR's exact advantage, QR-DQN's target and epsilon schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from _training import roundtrip

from offrl.algos import Algorithm, EnvSpec, get_algorithm, list_algorithms
from offrl.algos.discrete_bcq import DiscreteBCQ
from offrl.data import Dataset
from offrl.data.sampler import Batch, TensorSampler
from offrl.losses import conservative_penalty, quantile_huber_loss, quantile_midpoints

DISCRETE = [n for n in list_algorithms() if "discrete" in get_algorithm(n).action_kinds]
ONLY_DISCRETE = [n for n in DISCRETE if "continuous" not in get_algorithm(n).action_kinds]
NUM_ACTIONS = 3
SPECS = {
    "frames": EnvSpec((4, 10, 10), NUM_ACTIONS, discrete=True),  # MinAtar's size
    "vector": EnvSpec((5,), NUM_ACTIONS, discrete=True),
}
SMALL: dict[str, Any] = {"hidden": (32, 32), "batch_size": 16}
VARIANTS: dict[str, dict[str, Any]] = {  # small, and every network moves within 20 updates
    "qrdqn": {"num_quantiles": 8, "target_update_every": 5},
    "discrete_cql": {"num_quantiles": 8, "target_update_every": 5},
    "discrete_bcq": {"target_update_every": 5},
    "discrete_crr": {"target_update_every": 5},
    "discrete_crr_cql": {"target_update_every": 5},
}


def _dataset(spec: EnvSpec, n: int = 300, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    if len(spec.obs_shape) == 3:
        obs = (rng.random((n + 1, *spec.obs_shape)) < 0.1).astype(np.uint8) * 255
    else:
        obs = rng.standard_normal((n + 1, *spec.obs_shape)).astype(np.float32)
    return Dataset(
        observations=obs[:-1],
        actions=rng.integers(0, spec.action_dim, n),
        rewards=rng.standard_normal(n).astype(np.float32),
        next_observations=obs[1:],
        terminals=rng.random(n) < 0.05,
        timeouts=np.zeros(n, dtype=bool),
    )


def _make(name: str, spec: EnvSpec, seed: int = 0, **extra: Any) -> Algorithm:
    cls = get_algorithm(name)
    options = {**SMALL, **VARIANTS.get(name, {}), **extra}
    return cls(spec, cls.config_class.from_dict(options), seed=seed)


def _states(algo: Algorithm) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": t.detach().clone()
        for name, module in algo.modules_by_name().items()
        for k, t in module.state_dict().items()
    }


def test_the_discrete_algorithms_are_registered() -> None:
    assert {
        "bc",
        "qrdqn",
        "discrete_bcq",
        "discrete_cql",
        "discrete_crr",
        "discrete_crr_cql",
    } <= set(DISCRETE)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("name", DISCRETE)
def test_update_act_androundtrip(name: str, spec_name: str) -> None:
    """Every network moves, metrics are finite floats, acting gives valid indices for single
    and batched frames (uint8 kept), and a checkpoint continues identically."""
    spec = SPECS[spec_name]
    algo = _make(name, spec)
    data = _dataset(spec)
    sampler = TensorSampler(data, algo.config.batch_size, seed=1)
    before = _states(algo)
    for _ in range(20):
        metrics = algo.update(sampler.sample())
        assert metrics and all(type(v) is float and math.isfinite(v) for v in metrics.values())
    after = _states(algo)
    for key in before:
        assert not torch.equal(before[key], after[key]), f"{key} did not change"
    obs = data.observations[:7]
    many = algo.act(obs)
    assert many.shape == (7,) and many.dtype == np.int64
    assert ((many >= 0) & (many < NUM_ACTIONS)).all()
    assert algo.act(obs[0]).shape == ()
    np.testing.assert_array_equal(algo.act(obs), many)  # deterministic

    copy = Algorithm.from_state_dict(roundtrip(algo.state_dict()))
    assert type(copy) is type(algo) and copy.config == algo.config and copy.spec == spec
    for _ in range(6):  # across a target copy (every 5 updates)
        batch = sampler.sample()
        assert algo.update(batch) == copy.update(batch)
    for key, value in _states(algo).items():
        assert torch.equal(value, _states(copy)[key]), key
    np.testing.assert_array_equal(copy.act(obs), algo.act(obs))


@pytest.mark.parametrize("name", DISCRETE)
def test_load_state_dict_rejects_other_algorithm(name: str) -> None:
    spec = SPECS["vector"]
    algo = _make(name, spec)
    for other in DISCRETE:
        if other != name:
            with pytest.raises(ValueError, match=f"checkpoint is for '{other}'"):
                algo.load_state_dict(_make(other, spec).state_dict())


@pytest.mark.parametrize("name", ONLY_DISCRETE)
def test_continuous_data_is_refused_naming_the_actions(name: str) -> None:
    from offrl.errors import IncompatibleDataError

    with pytest.raises(IncompatibleDataError, match="actions: .* discrete"):
        _make(name, EnvSpec((5,), 2))


@pytest.mark.parametrize("name", ONLY_DISCRETE)
def test_layer_options_reach_every_network(name: str) -> None:
    from offrl.nn import EnsembleMLP

    algo = _make(name, SPECS["vector"], activation="tanh", critic_layer_norm=True)
    nets = [m for v in algo.modules_by_name().values() for m in v.modules()]
    mlps = [m for m in nets if isinstance(m, EnsembleMLP)]
    assert mlps and all(m.activation == "tanh" for m in mlps)


# ---------------------------------------------------------------------- by hand
def test_quantile_huber_loss_by_hand() -> None:
    """Two quantiles (tau_hat 1/4, 3/4) against two target samples, kappa = 1:
    u = T_j - theta_i for theta = (0, 2), T = (1, -1):
      i=0 (tau 1/4): u = (1, -1):   weights (1/4, 3/4), Huber (1/2, 1/2)  -> mean_j 1/4
      i=1 (tau 3/4): u = (-1, -3):  weights (1/4, 1/4), Huber (1/2, 5/2)  -> mean_j 3/8
    sum_i: 5/8."""
    np.testing.assert_allclose(quantile_midpoints(2).numpy(), [0.25, 0.75])
    theta = torch.tensor([[0.0, 2.0]], requires_grad=True)
    loss = quantile_huber_loss(theta, torch.tensor([[1.0, -1.0]]))
    assert loss.item() == pytest.approx(5 / 8)
    loss.backward()
    # d/dtheta_0: mean_j w * dHuber/dtheta = (1/4 * -1 + 3/4 * 1) / 2 = 1/4;
    # d/dtheta_1: (1/4 * 1 + 1/4 * 1) / 2 = 1/4 (|u| = 3 > kappa: slope 1).
    assert theta.grad is not None
    np.testing.assert_allclose(theta.grad.numpy(), [[0.25, 0.25]])
    # kappa = 2: the Huber loss is quadratic up to 2 and divided by kappa.
    big = quantile_huber_loss(torch.tensor([[0.0]]), torch.tensor([[3.0]]), kappa=2.0)
    assert big.item() == pytest.approx(0.5 * 2.0 * (3.0 - 1.0) / 2.0)


@pytest.mark.parametrize(("batch", "n", "m", "kappa", "scale"), [(32, 200, 200, 1.0, 1.0),
                         (5, 7, 3, 2.0, 3.0), (8, 50, 50, 0.5, 40.0)])  # fmt: skip
def test_quantile_huber_loss_equals_the_pairwise_table(
    batch: int, n: int, m: int, kappa: float, scale: float
) -> None:
    """The sorted prefix-sum computation equals eq. 10 over the [B, N, M] table of pairs, value
    and gradient, with ties between quantiles and targets."""
    g = torch.Generator().manual_seed(0)
    theta = (torch.randn(batch, n, generator=g) * scale).requires_grad_(True)
    target = torch.randn(batch, m, generator=g) * scale
    target[:, :2] = theta.detach()[:, :2]  # u = 0 exactly
    target[:, 2] = theta.detach()[:, 3] + kappa  # u = kappa exactly
    u = target[:, None, :] - theta[:, :, None]
    huber = torch.where(u.abs() <= kappa, 0.5 * u * u, kappa * (u.abs() - 0.5 * kappa))
    weight = (quantile_midpoints(n)[:, None] - (u.detach() < 0).float()).abs()
    pairwise = (weight * huber / kappa).mean(-1).sum(-1).mean()
    (want,) = torch.autograd.grad(pairwise, theta)
    loss = quantile_huber_loss(theta, target, kappa)
    (got,) = torch.autograd.grad(loss, theta)
    assert loss.item() == pytest.approx(pairwise.item(), rel=1e-6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


def test_cql_logsumexp_penalty_by_hand() -> None:
    """Discrete CQL(H): log sum_a exp Q(s, a) - Q(s, a_data), exact over the actions."""
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    actions = torch.tensor([2, 0])
    want = ((math.log(math.e + math.e**2 + math.e**3) - 3.0) + (math.log(3.0) - 0.0)) / 2
    got = conservative_penalty(q.T, 0.0, q.gather(1, actions[:, None])[:, 0])
    assert got.item() == pytest.approx(want)


def test_discrete_cql_adds_its_penalty_to_qrdqn() -> None:
    """Discrete CQL's loss is QR-DQN's plus min_q_weight times the penalty on the quantiles'
    means: the same networks give losses that differ by exactly that."""
    spec = SPECS["vector"]
    cql = _make("discrete_cql", spec, min_q_weight=3.0)
    qr = _make("qrdqn", spec)
    qr.q.load_state_dict(cql.q.state_dict())
    qr.q_target.load_state_dict(cql.q_target.state_dict())
    batch = TensorSampler(_dataset(spec), 16, seed=0).sample()
    loss_cql, info = cql.critic_loss(batch)
    loss_qr, _ = qr.critic_loss(batch)
    q = cql.q(batch.obs)
    penalty = (torch.logsumexp(q, 1) - q.gather(1, batch.actions[:, None])[:, 0]).mean()
    assert info["cql_loss"].item() == pytest.approx(penalty.item(), rel=1e-6)
    assert loss_cql.item() == pytest.approx(loss_qr.item() + 3.0 * penalty.item(), rel=1e-6)


def test_bcq_action_filter_by_hand() -> None:
    """Imitation probabilities (0.5, 0.3, 0.2) relative to the best: (1, 0.6, 0.4); with
    tau = 0.5 only actions 0 and 1 may be chosen, so Q = (1, 2, 9) picks action 1; with tau =
    0.3 all three pass and action 2 wins; with tau = 0.7 only action 0."""
    spec = SPECS["vector"]
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    q = torch.tensor([[1.0, 2.0, 9.0]])
    from offrl.algos.discrete import greedy

    for tau, want in ((0.5, 1), (0.3, 2), (0.7, 0)):
        algo = _make("discrete_bcq", spec, threshold=tau)
        assert isinstance(algo, DiscreteBCQ)
        assert greedy(q, algo.allowed(logits)).item() == want


def test_bcq_target_uses_filtered_online_choice_and_target_value() -> None:
    """y = r + gamma (1 - d) Q'(s', a*), a* the filtered argmax of the online Q at s'."""
    spec = SPECS["vector"]
    algo = _make("discrete_bcq", spec, threshold=0.3, target_update_every=1000)
    assert isinstance(algo, DiscreteBCQ)
    data = _dataset(spec)
    batch = TensorSampler(data, 16, seed=0).sample()
    algo.update(batch)  # the first update copies the network into the target
    with torch.no_grad():  # perturb the target so that it differs from the online network
        for p in algo.q_target.parameters():
            p.add_(0.1)
    q_next, logits_next = algo.q.outputs(batch.next_obs)
    best = (q_next[..., 0].masked_fill(~algo.allowed(logits_next), -1e9)).argmax(-1)
    value = algo.q_target(batch.next_obs).gather(1, best[:, None])[:, 0]
    want = batch.rewards + 0.99 * (1 - batch.dones) * value
    q_all, logits = algo.q.outputs(batch.obs)
    q = q_all[..., 0].gather(1, batch.actions[:, None])[:, 0]
    want_loss = torch.nn.functional.smooth_l1_loss(q, want).item()
    metrics = algo.update(batch)
    assert metrics["q_loss"] == pytest.approx(want_loss, rel=1e-5)


def test_qrdqn_target_distribution_by_hand() -> None:
    """The target quantiles are r + gamma (1 - done) theta'(s', a*) with a* greedy under the
    online network (double_q) or the target (the paper)."""
    spec = SPECS["vector"]
    for double in (True, False):
        algo = _make("qrdqn", spec, double_q=double)
        batch = TensorSampler(_dataset(spec), 16, seed=3).sample()
        with torch.no_grad():
            for p in algo.q_target.parameters():
                p.mul_(1.5)
            nt = algo.q_target.quantiles(batch.next_obs)
            chooser = algo.q(batch.next_obs) if double else nt.mean(-1)
            rows = torch.arange(16)
            target = (
                batch.rewards[:, None]
                + 0.99 * (1 - batch.dones[:, None]) * nt[rows, chooser.argmax(-1)]
            )
        taken = algo.q.quantiles(batch.obs)[rows, batch.actions]
        want = quantile_huber_loss(taken, target).item()
        algo.num_updates = 1  # no target copy at this update
        assert algo.td_loss(batch, algo.q.quantiles(batch.obs))[0].item() == pytest.approx(want)


def test_qrdqn_epsilon_schedule_and_exploration() -> None:
    """Epsilon falls linearly from eps_start to eps_end over eps_decay_updates updates and
    stays there; at epsilon 0 explore is the greedy policy, at 1 it is uniform."""
    spec = SPECS["vector"]
    algo = _make("qrdqn", spec, eps_start=1.0, eps_end=0.1, eps_decay_updates=100)
    assert algo.epsilon() == 1.0
    algo.num_updates = 50
    assert algo.epsilon() == pytest.approx(0.55)
    algo.num_updates = 1000
    assert algo.epsilon() == pytest.approx(0.1)
    obs = np.random.default_rng(0).standard_normal((4000, 5)).astype(np.float32)
    greedy_algo = _make("qrdqn", spec, eps_start=0.0, eps_end=0.0)
    np.testing.assert_array_equal(greedy_algo.explore(obs), greedy_algo.act(obs))
    uniform = _make("qrdqn", spec, eps_start=1.0, eps_end=1.0).explore(obs)
    counts = np.bincount(uniform, minlength=NUM_ACTIONS) / len(obs)
    np.testing.assert_allclose(counts, 1 / NUM_ACTIONS, atol=0.03)


def test_crr_exact_advantage_and_weights_by_hand() -> None:
    """With the critic's Q = (1, 2, 4) and the policy's probabilities (1/2, 1/4, 1/4) at a
    state, the mean baseline is 2 and the max baseline 4; the dataset action 2 has advantage
    2 (exp weight e^2) or 0 (binary: 0)."""
    spec = SPECS["vector"]
    q_all = torch.tensor([[1.0, 2.0, 4.0]])
    log_probs = torch.tensor([[0.5, 0.25, 0.25]]).log()

    class Fixed(torch.nn.Module):
        def logits(self, obs: torch.Tensor) -> torch.Tensor:
            return log_probs.expand(len(obs), -1).clone().requires_grad_(True)

    for adv_type, wtype, want in (("mean", "exp", math.exp(2.0)), ("max", "binary", 0.0)):
        algo = _make("discrete_crr", spec, advantage_type=adv_type, weight_type=wtype)
        algo.actor = Fixed()  # type: ignore[assignment]
        batch = Batch(
            torch.zeros(1, 5), torch.tensor([2]), torch.zeros(1), torch.zeros(1, 5), torch.zeros(1)
        )
        loss, info = algo.actor_loss(batch, q_all)
        assert info["adv_weight_mean"].item() == pytest.approx(want, rel=1e-6)
        assert loss.item() == pytest.approx(want * -math.log(0.25), rel=1e-6)


def test_crr_cql_is_crr_plus_the_penalty() -> None:
    spec = SPECS["vector"]
    crr = _make("discrete_crr", spec)
    both = _make("discrete_crr_cql", spec, min_q_weight=2.0)
    both.load_state_dict(
        {**crr.state_dict(), "algo": "discrete_crr_cql", "config": both.config.to_dict()}
    )
    batch = TensorSampler(_dataset(spec), 16, seed=0).sample()
    q_all = crr.critic(batch.obs)
    loss_crr, _ = crr.critic_loss(batch, q_all)
    loss_both, info = both.critic_loss(batch, q_all)
    want = (torch.logsumexp(q_all, 1) - q_all.gather(1, batch.actions[:, None])[:, 0]).mean()
    assert loss_both.item() == pytest.approx(loss_crr.item() + 2.0 * want.item(), rel=1e-6)
    assert info["cql_loss"].item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["qrdqn", "discrete_bcq", "discrete_crr"])
def test_target_copy_before_or_after_the_step(name: str) -> None:
    """Every ``target_update_every``-th update copies into the target the weights it starts
    from (``before_update`` and ``before_step``, Tianshou's orders) or those it ends with
    (``after_step``, d3rlpy's); the updates between copies leave the target alone. With
    ``before_update`` the update's own targets already use the copy: its loss differs from
    ``before_step``'s at the second copy, not before."""
    spec = EnvSpec((4,), 3, discrete=True)
    g = torch.Generator().manual_seed(0)
    batches = [
        Batch(torch.randn(8, 4, generator=g), torch.randint(3, (8,), generator=g),
              torch.randn(8, generator=g), torch.randn(8, 4, generator=g), torch.zeros(8))
        for _ in range(3)
    ]  # fmt: skip

    def flat(module: torch.nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    cls = get_algorithm(name)
    losses = {}
    for order in ("before_update", "before_step", "after_step"):
        options = {"hidden": (16,), "target_update_every": 2, "lr": 1e-2, "target_copy": order}
        algo: Any = cls(spec, cls.config_class.from_dict(options), seed=0)
        net, target = (
            (algo.critic, algo.critic_target) if name == "discrete_crr" else (algo.q, algo.q_target)
        )
        start = flat(net)
        first = order != "after_step"
        losses[order] = [algo.update(batches[0])]  # update 0: a copy is due
        expected = start if first else flat(net)
        assert torch.equal(flat(target), expected), order
        losses[order].append(algo.update(batches[1]))  # update 1: no copy
        assert torch.equal(flat(target), expected), order
        before = flat(net)
        losses[order].append(algo.update(batches[2]))  # update 2: due again
        assert torch.equal(flat(target), before if first else flat(net)), order
        assert not torch.equal(before, flat(net))  # the step moved the network
    key = "critic_loss" if name == "discrete_crr" else next(iter(losses["before_step"][0]))
    now, later = (
        [float(m[key]) for m in losses[order]] for order in ("before_update", "before_step")
    )
    assert now[:2] == later[:2] and now[2] != later[2]
