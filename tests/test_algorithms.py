"""The Algorithm contract, for every registered algorithm, and TD3+BC / BC losses by hand."""

from __future__ import annotations

import dataclasses
import io
import math
import pydoc
from typing import Any

import numpy as np
import pytest
import torch
from _devices import DEVICES, needs_cuda
from _training import roundtrip

from offrl.algos import Algorithm, EnvSpec, get_algorithm, list_algorithms
from offrl.algos.base import Component
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.data import Dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import Batch, TensorSampler

OBS_DIM, ACT_DIM = 5, 2
SMALL = {"hidden": (64, 64), "batch_size": 32}

# Defaults that must change for 20 test updates to touch every network: AWR copies V into its
# snapshot every `recompute_every` (default 1000) updates.
# The model-based ones train a small model in a few steps and roll it out from few states.
_MODEL_BASED = {
    "model_hidden": (16,),
    "model_max_epochs": 2,
    "rollout_batch_size": 40,
    "rollout_freq": 5,
    "model_retain_epochs": 2,
}
CONTRACT_DEFAULTS: dict[str, dict[str, Any]] = {
    "awr": {"recompute_every": 10},
    "mopo": _MODEL_BASED,
    "combo": _MODEL_BASED,
    "mobile": _MODEL_BASED,
    "balanced_replay": {"members": 2},
}

# The algorithms for continuous actions, checked here (the discrete ones, with image and
# vector observations: tests/test_algorithms_discrete.py).
CONTINUOUS = [n for n in list_algorithms() if "continuous" in get_algorithm(n).action_kinds]
# Every registered algorithm with its defaults (but small networks), plus extra variants.
CASES: list[tuple[str, dict[str, Any]]] = [
    (name, CONTRACT_DEFAULTS.get(name, {})) for name in CONTINUOUS
] + [
    ("bc", {"policy": "gaussian"}),
    ("td3bc", {"num_critics": 3, "policy_freq": 1}),
    ("rebrac", {"critic_layer_norm": False, "actor_layer_norm": True, "normalize_q": False}),
    ("rebrac", {"critic_bc_coef": 0.0, "edac_init": False, "num_critics": 3}),
    ("awac", {"num_critics": 3}),
    ("crr", {"advantage_type": "max", "weight_type": "binary", "num_critics": 2}),
    ("crr", {"target_update": "hard", "target_update_interval": 4}),
    ("cql", {"lagrange": True, "max_backup": True, "backup_entropy": True}),
    ("cql", {"lagrange": True, "mean_backup": True, "alpha_prime_init": math.e}),
    ("awr", {"lam": 1.0, "recompute_every": 7}),  # Monte-Carlo returns
    ("awr", {"normalize_advantages": False, "beta": 0.5, "recompute_every": 3}),
    ("bc_pct", {"frac": 0.5, "policy": "gaussian"}),
    ("bcq", {"num_critics": 3, "lmbda": 1.0}),
    ("bear", {"mmd_kernel": "gaussian", "warmup_steps": 3}),
    ("sac_n", {"num_critics": 5, "hidden": (32, 32, 32)}),
    ("edac", {"num_critics": 3, "eta": 5.0}),
    ("edac", {"num_critics": 4, "eta": 0.0}),
    ("uwac", {"weight": "inverse", "weight_actor": False, "warmup_steps": 3}),
    ("uwac", {"num_dropout_samples": 4, "dropout": 0.5, "warmup_steps": 0}),
]
# Networks trained before the updates and fixed during them: the model-based algorithms'
# dynamics ensemble (trained in attach_data, then only rolled out).
FIXED_DURING_UPDATES = ("dynamics.",)
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in extra.items()) for name, extra in CASES]

SPECS = {
    "unit": EnvSpec((OBS_DIM,), ACT_DIM),
    "bounds": EnvSpec((OBS_DIM,), ACT_DIM, action_low=(-2.0, -1.0), action_high=(2.0, 3.0)),
}


def _dataset(n: int = 500, seed: int = 0) -> Dataset:
    """Random transitions in the unit action box (as the trainer prepares them)."""
    rng = np.random.default_rng(seed)
    terminals = rng.random(n) < 0.05
    return Dataset(
        observations=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, OBS_DIM), dtype=np.float32),
        terminals=terminals,
        timeouts=np.zeros(n, dtype=bool),
    )


def _make(
    name: str, extra: dict[str, Any], spec: EnvSpec, seed: int = 0, device: str = "cpu"
) -> Algorithm:
    cls = get_algorithm(name)
    return cls(spec, cls.config_class.from_dict({**SMALL, **extra}), seed=seed, device=device)


def _attach(algo: Algorithm, data: Dataset) -> Dataset:
    """What the trainer does with the data: ``prepare_data``, then ``attach_data`` (here the data
    is already in the unit action box and normalised, so preprocessing is skipped)."""
    data = algo.prepare_data(data)
    algo.attach_data(data)
    return data


def _sampler(algo: Algorithm, data: Dataset, seed: int, device: str = "cpu") -> TensorSampler:
    """The trainer's sampler for ``algo`` (with ``Batch.next_actions`` if it needs them)."""
    return TensorSampler(
        data, algo.config.batch_size, seed=seed, device=device,
        **algo.sampler_options(),
    )  # fmt: skip


def _module_states(algo: Algorithm) -> dict[str, torch.Tensor]:
    """Every tensor of every network (the algorithm's and its parts'), flattened by name."""
    out = {}
    parts = [vars(v) for v in vars(algo).values() if isinstance(v, Component)]
    for key, value in [*vars(algo).items(), *(kv for part in parts for kv in part.items())]:
        if isinstance(value, torch.nn.Module):
            for k, t in value.state_dict().items():
                out[f"{key}.{k}"] = t.detach().clone()
    return out


def _assert_same_metrics(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k


# ---------------------------------------------------------------------- the contract
def test_registry() -> None:
    names = list_algorithms()
    assert {"bc", "td3bc"} <= set(names)
    assert names == sorted(names)
    for name in names:
        assert get_algorithm(name).name == name
    with pytest.raises(KeyError, match="unknown algorithm"):
        get_algorithm("no-such-algo")


def test_at_most_one_level_of_inheritance_below_sac() -> None:
    """An algorithm derives from :class:`Algorithm` or from one subclass of it (SAC, TD3+BC,
    BC), never deeper: what two siblings share is a part of the core (BEAR and UWAC: the
    support constraint), not a chain of subclasses."""
    from offrl.algos import Algorithm

    for name in list_algorithms():
        cls = get_algorithm(name)
        chain = [c for c in cls.__mro__ if issubclass(c, Algorithm) and c is not Algorithm]
        assert len(chain) <= 2, f"{name}: {[c.__name__ for c in chain]}"


@pytest.mark.parametrize("name", CONTINUOUS)
def test_any_layer_stack_in_any_algorithm(name: str) -> None:
    """``activation``, ``actor_layer_norm`` and ``critic_layer_norm`` reach every policy and
    value network of every algorithm (not the behaviour VAEs), and the updates stay finite."""
    from offrl.nn import ConditionalVAE, EnsembleMLP

    extra = {"activation": "tanh", "actor_layer_norm": True, "critic_layer_norm": True}
    algo = _make(name, {**CONTRACT_DEFAULTS.get(name, {}), **extra}, SPECS["unit"])
    nets = [
        m
        for v in vars(algo).values()
        if isinstance(v, torch.nn.Module) and not isinstance(v, ConditionalVAE)
        for m in v.modules()
        if isinstance(m, EnsembleMLP)
    ]
    assert nets
    for net in nets:
        assert net.activation == "tanh" and net.layer_norm and not net.fused
    sampler = _sampler(algo, _attach(algo, _dataset()), seed=1)
    for _ in range(5):
        assert all(math.isfinite(v) for v in algo.update(sampler.sample()).values())


def test_unknown_config_option_rejected() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        get_algorithm("td3bc").config_class.from_dict({"alpah": 2.5})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_update_and_act(name: str, extra: dict[str, Any], spec_name: str, device: str) -> None:
    spec = SPECS[spec_name]
    algo = _make(name, extra, spec, device=device)
    data = _attach(algo, _dataset())
    sampler = _sampler(algo, data, seed=1, device=device)
    before = _module_states(algo)
    assert before, "an algorithm must hold at least one network"
    for i in range(20):
        metrics = algo.update(sampler.sample())
        assert metrics, "update must report metrics"
        for k, v in metrics.items():
            assert type(v) is float, (k, type(v))
            assert math.isfinite(v), (i, k, v)
    assert algo.num_updates == 20
    after = _module_states(algo)
    for key in before:
        if key.startswith(FIXED_DURING_UPDATES):
            assert torch.equal(before[key], after[key]), f"{key} changed"
        elif torch.is_floating_point(before[key]):
            assert not torch.equal(before[key], after[key]), f"{key} did not change"

    low = np.array(spec.action_low or (-1.0,) * ACT_DIM, np.float32)
    high = np.array(spec.action_high or (1.0,) * ACT_DIM, np.float32)
    rng = np.random.default_rng(0)
    one = algo.act(rng.standard_normal(OBS_DIM).astype(np.float32))
    assert one.shape == (ACT_DIM,)
    many = algo.act(rng.standard_normal((7, OBS_DIM)).astype(np.float32))
    assert many.shape == (7, ACT_DIM)
    extreme = algo.act(1e4 * rng.standard_normal((64, OBS_DIM)).astype(np.float32))
    for a in (one, many, extreme):
        assert np.isfinite(a).all()
        assert (a >= low - 1e-6).all() and (a <= high + 1e-6).all()
    # Acting is deterministic.
    np.testing.assert_array_equal(
        algo.act(np.ones(OBS_DIM, np.float32)), algo.act(np.ones(OBS_DIM))
    )


@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_act_normalises_and_rescales(name: str, extra: dict[str, Any]) -> None:
    """act(obs) = low + (policy((obs - mean) / std) + 1) / 2 * (high - low)."""
    spec = SPECS["bounds"]
    algo = _make(name, extra, spec)
    mean = np.linspace(-1, 1, OBS_DIM).astype(np.float32)
    std = np.linspace(0.5, 2, OBS_DIM).astype(np.float32)
    algo.set_normalizer(ObsNormalizer(mean, std))
    np.testing.assert_array_equal(algo.normalizer().mean, mean)
    np.testing.assert_array_equal(algo.normalizer().std, std)
    obs = np.random.default_rng(1).standard_normal((6, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        unit = algo.policy(torch.from_numpy((obs - mean) / std)).numpy()
    low, high = np.array([-2.0, -1.0]), np.array([2.0, 3.0])
    np.testing.assert_allclose(
        algo.act(obs), low + (unit + 1) / 2 * (high - low), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_state_dictroundtrip(name: str, extra: dict[str, Any], spec_name: str, device: str) -> None:
    spec = SPECS[spec_name]
    algo = _make(name, extra, spec, seed=3, device=device)
    algo.set_normalizer(
        ObsNormalizer(np.full(OBS_DIM, 0.3, np.float32), np.full(OBS_DIM, 1.7, np.float32))
    )
    data = _attach(algo, _dataset())
    sampler = _sampler(algo, data, seed=2, device=device)
    for _ in range(5):  # odd: TD3+BC's next update is a critic-only one
        algo.update(sampler.sample())

    state = roundtrip(algo.state_dict())
    copy = Algorithm.from_state_dict(state, device=device)
    copy.attach_data(data)  # as the trainer does on resume; the data is not in the state
    assert type(copy) is type(algo)
    assert copy.config == algo.config
    assert copy.spec == spec
    assert copy.num_updates == algo.num_updates == 5

    obs = np.random.default_rng(4).standard_normal((7, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(copy.act(obs), algo.act(obs))
    for key, value in _module_states(algo).items():
        assert torch.equal(value, _module_states(copy)[key]), key

    # Two further updates on the same batches: identical metrics and parameters (optimiser
    # moments, update counter and noise generator all came back).
    for _ in range(2):
        batch = sampler.sample()
        _assert_same_metrics(algo.update(batch), copy.update(batch))
    for key, value in _module_states(algo).items():
        assert torch.equal(value, _module_states(copy)[key]), key
    np.testing.assert_array_equal(copy.act(obs), algo.act(obs))


@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_load_state_dict_into_existing(name: str, extra: dict[str, Any]) -> None:
    """load_state_dict on a differently seeded instance makes it act identically."""
    spec = SPECS["unit"]
    src = _make(name, extra, spec, seed=0)
    dst = _make(name, extra, spec, seed=1)
    obs = np.random.default_rng(5).standard_normal((4, OBS_DIM)).astype(np.float32)
    assert not np.array_equal(src.act(obs), dst.act(obs))
    dst.load_state_dict(roundtrip(src.state_dict()))
    np.testing.assert_array_equal(src.act(obs), dst.act(obs))


# Algorithms whose act() samples candidate actions from the algorithm's generator.
SAMPLING_ACTORS = {"bcq", "bear", "uwac"}


@needs_cuda
@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_gpu_state_loads_on_cpu_and_back(name: str, extra: dict[str, Any]) -> None:
    """Trained on a GPU, evaluated or resumed on a CPU (``offrl evaluate`` loads onto the CPU),
    and back: the same weights, the same deterministic actions, and training goes on."""
    spec = SPECS["bounds"]
    gpu = _make(name, extra, spec, seed=3, device="cuda")
    data = _attach(gpu, _dataset())
    gpu_sampler = _sampler(gpu, data, seed=2, device="cuda")
    for _ in range(5):
        gpu.update(gpu_sampler.sample())
    buf = io.BytesIO()
    torch.save(gpu.state_dict(), buf)
    buf.seek(0)
    cpu = Algorithm.from_state_dict(torch.load(buf, map_location="cpu", weights_only=True))
    cpu.attach_data(data)
    for key, value in _module_states(gpu).items():
        assert torch.equal(value.cpu(), _module_states(cpu)[key]), key
    obs = np.random.default_rng(4).standard_normal((7, OBS_DIM)).astype(np.float32)
    if name not in SAMPLING_ACTORS:  # the others draw from a re-seeded generator (offrl.rng)
        np.testing.assert_allclose(cpu.act(obs), gpu.act(obs), rtol=1e-4, atol=1e-5)
    cpu_sampler = _sampler(cpu, data, seed=2)
    for _ in range(3):
        assert all(math.isfinite(v) for v in cpu.update(cpu_sampler.sample()).values())
    back = Algorithm.from_state_dict(roundtrip(cpu.state_dict()), device="cuda")
    back.attach_data(data)
    assert all(math.isfinite(v) for v in back.update(gpu_sampler.sample()).values())
    assert back.num_updates == 9


@needs_cuda
@pytest.mark.parametrize(
    ("name", "extra"),
    [("bc", {}), ("iql", {}), ("td3bc", {"policy_noise": 0.0}), ("rebrac", {"policy_noise": 0.0})],
    ids=["bc", "iql", "td3bc", "rebrac"],
)
def test_gpu_update_matches_cpu(name: str, extra: dict[str, Any]) -> None:
    """With nothing random in the update (TD3+BC without target-smoothing noise), the GPU
    trains the same networks from the same batches as the CPU, to float rounding."""
    cpu = _make(name, extra, SPECS["unit"])
    gpu = _make(name, extra, SPECS["unit"], device="cuda")
    data = _attach(cpu, _dataset())
    gpu.attach_data(data)
    sampler = _sampler(cpu, data, seed=1)
    for _ in range(10):
        batch = sampler.sample()
        m_cpu, m_gpu = cpu.update(batch), gpu.update(batch.to("cuda"))
        assert m_cpu.keys() == m_gpu.keys()
        for k in m_cpu:
            assert m_gpu[k] == pytest.approx(m_cpu[k], rel=1e-3, abs=1e-5), k
    for key, value in _module_states(cpu).items():
        torch.testing.assert_close(_module_states(gpu)[key].cpu(), value, rtol=1e-3, atol=1e-5)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@pytest.mark.parametrize(("name", "extra"), CASES, ids=CASE_IDS)
def test_state_holds_no_dataset_sized_tensor(name: str, extra: dict[str, Any]) -> None:
    """Per-transition quantities (AWR's returns) stay out of checkpoints: the base class saves
    every tensor attribute, so an algorithm must keep them elsewhere."""
    algo = _make(name, extra, SPECS["unit"])
    full = _dataset(n=2003)  # 2003: no network has a dimension of that size
    sampler = _sampler(algo, _attach(algo, full), seed=0)
    for _ in range(3):
        algo.update(sampler.sample())
    for t in _tensors(algo.state_dict()):
        assert len(full) not in t.shape, t.shape


@pytest.mark.parametrize("name", CONTINUOUS)
def test_load_state_dict_rejects_other_algorithm(name: str) -> None:
    spec = SPECS["unit"]
    algo = _make(name, {}, spec)
    others = [n for n in CONTINUOUS if n != name]
    for other in others:
        state = _make(other, {}, spec).state_dict()
        with pytest.raises(ValueError, match=f"checkpoint is for '{other}'"):
            algo.load_state_dict(state)
    forged = algo.state_dict()
    forged["algo"] = "something-else"
    with pytest.raises(ValueError, match="not"):
        algo.load_state_dict(forged)


def test_initialisation_depends_on_seed_only() -> None:
    spec = SPECS["unit"]
    torch.manual_seed(0)
    a = _make("td3bc", {}, spec, seed=11)
    torch.manual_seed(1)
    b = _make("td3bc", {}, spec, seed=11)
    c = _make("td3bc", {}, spec, seed=12)
    obs = np.ones((3, OBS_DIM), np.float32)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert not np.array_equal(a.act(obs), c.act(obs))


# ---------------------------------------------------------------------- TD3+BC by hand
def _mlp(net: Any, x: torch.Tensor, member: int) -> torch.Tensor:
    """One member of an EnsembleMLP evaluated with plain matmuls."""
    layers = net.layers()
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w[member] + b[member, 0]
        if i < len(layers) - 1:
            h = h.clamp_min(0.0)
    return h


def _tiny_batch(seed: int = 0, n: int = 6) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, 3, generator=g),
        actions=torch.rand(n, 2, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_obs=torch.randn(n, 3, generator=g),
        dones=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])[:n],
    )


def _tiny_td3bc(**kw: Any) -> TD3BC:
    cfg = TD3BCConfig(hidden=(8, 8), gamma=0.9, **kw)
    return TD3BC(EnvSpec((3,), 2), cfg, seed=0)


def test_td3bc_td_target_by_hand() -> None:
    algo = _tiny_td3bc(policy_noise=0.0)
    # Make the targets differ from the online networks, as they do after training.
    with torch.no_grad():
        algo.critic_target.net.flat.mul_(1.5)
        algo.actor_target.net.flat.add_(0.1)
    batch = _tiny_batch()
    with torch.no_grad():
        a_next = torch.tanh(_mlp(algo.actor_target.net, batch.next_obs, 0)).clamp(-1, 1)
        x = torch.cat([batch.next_obs, a_next], dim=1)
        q1 = _mlp(algo.critic_target.net, x, 0)[:, 0]
        q2 = _mlp(algo.critic_target.net, x, 1)[:, 0]
        assert not torch.allclose(q1, q2)
        expected = batch.rewards + 0.9 * (1 - batch.dones) * torch.minimum(q1, q2)
    target = algo.td_target(batch)
    assert target.shape == (6,)
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-6)
    # Terminal rows do not bootstrap.
    torch.testing.assert_close(target[batch.dones == 1], batch.rewards[batch.dones == 1])


def test_td3bc_target_noise_is_clipped() -> None:
    """With enormous noise, the target action is pi'(s') +- noise_clip (then clipped to the box)."""
    algo = _tiny_td3bc(policy_noise=1e6, noise_clip=0.3)
    batch = _tiny_batch()
    with torch.no_grad():
        pi = torch.tanh(_mlp(algo.actor_target.net, batch.next_obs, 0))
        candidates = []
        for signs in [(s1, s2) for s1 in (-1, 1) for s2 in (-1, 1)]:
            a = (pi + 0.3 * torch.tensor(signs, dtype=torch.float32)).clamp(-1, 1)
            x = torch.cat([batch.next_obs, a], dim=1)
            q = torch.minimum(
                _mlp(algo.critic_target.net, x, 0), _mlp(algo.critic_target.net, x, 1)
            )
            candidates.append(batch.rewards + 0.9 * (1 - batch.dones) * q[:, 0])
        cands = torch.stack(candidates)  # [4, B]
    target = algo.td_target(batch)
    hit = (cands - target).abs().amin(0)
    assert (hit < 1e-5).all(), hit


def test_td3bc_critic_and_actor_loss_by_hand() -> None:
    algo = _tiny_td3bc(policy_noise=0.0, alpha=2.0)
    batch = _tiny_batch(1)
    with torch.no_grad():
        target = algo.td_target(batch)
        x = torch.cat([batch.obs, batch.actions], dim=1)
        qs = [_mlp(algo.critic.net, x, m)[:, 0] for m in (0, 1)]
        expected_critic = sum(((q - target) ** 2).mean() for q in qs)
        pi = torch.tanh(_mlp(algo.actor.net, batch.obs, 0))
        q_pi = _mlp(algo.critic.net, torch.cat([batch.obs, pi], dim=1), 0)[:, 0]
        lmbda = 2.0 / q_pi.abs().mean()
        expected_actor = -lmbda * q_pi.mean() + ((pi - batch.actions) ** 2).mean()
    critic_loss, info = algo.critic_loss(batch)
    torch.testing.assert_close(critic_loss, expected_critic, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(info["q_mean"], torch.stack(qs).mean(), rtol=1e-5, atol=1e-6)
    actor_loss, _ = algo.actor_loss(batch)
    torch.testing.assert_close(actor_loss, expected_actor, rtol=1e-5, atol=1e-6)
    # The actor loss trains the actor only: the critic's weights get no gradient.
    actor_loss.backward()
    assert algo.critic.net.flat.grad is None
    assert algo.actor.net.flat.grad is not None and algo.actor.net.flat.grad.abs().sum() > 0


def test_td3bc_policy_delay() -> None:
    algo = _tiny_td3bc(policy_freq=2)
    batch = _tiny_batch()
    actor0 = algo.actor.net.flat.detach().clone()
    target0 = algo.critic_target.net.flat.detach().clone()
    m1 = algo.update(batch)
    assert set(m1) == {"critic_loss", "q_mean"}
    assert torch.equal(algo.actor.net.flat, actor0)
    assert torch.equal(algo.critic_target.net.flat, target0)
    critic1 = algo.critic.net.flat.detach().clone()
    m2 = algo.update(batch)
    assert {"critic_loss", "q_mean", "actor_loss", "bc_loss"} <= set(m2)
    assert not torch.equal(algo.actor.net.flat, actor0)
    # Polyak: target <- (1 - tau) target + tau critic (after the critic's second step).
    expected = torch.lerp(target0, algo.critic.net.flat.detach(), 0.005)
    torch.testing.assert_close(algo.critic_target.net.flat, expected)
    assert not torch.equal(algo.critic.net.flat, critic1)


# ---------------------------------------------------------------------- BC by hand
@pytest.mark.parametrize("policy", ["deterministic", "gaussian"])
def test_bc_loss_by_hand(policy: str) -> None:
    cls = get_algorithm("bc")
    algo = cls(EnvSpec((3,), 2), cls.config_class.from_dict({"hidden": (8,), "policy": policy}))
    batch = _tiny_batch(2)
    loss, _ = algo.bc_loss(batch)  # type: ignore[attr-defined]
    with torch.no_grad():
        out = _mlp(algo.actor.net, batch.obs, 0)  # type: ignore[attr-defined]
        if policy == "deterministic":
            expected = ((torch.tanh(out) - batch.actions) ** 2).mean()
        else:
            mu, log_std = torch.tanh(out[:, :2]), out[:, 2:].clamp(-5.0, 2.0)
            var = torch.exp(2 * log_std)
            logp = -((batch.actions - mu) ** 2) / (2 * var) - log_std - 0.5 * math.log(2 * math.pi)
            expected = -logp.sum(-1).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- CQL's mean-action backup
def test_cql_mean_backup_target_by_hand() -> None:
    """``mean_backup``: y = r + gamma (1 - d) min_i Q'_i(s', tanh(mu(s'))), with no draw in it
    (d3rlpy's CQL target); the default draws one a' ~ pi(s'), so its TD loss moves with the
    generator."""
    cls = get_algorithm("cql")
    batch = _tiny_batch()

    def td_losses(mean_backup: bool) -> list[float]:
        cfg = cls.config_class.from_dict(
            {"hidden": (8, 8), "gamma": 0.9, "mean_backup": mean_backup}
        )
        algo: Any = cls(EnvSpec((3,), 2), cfg, seed=0)
        with torch.no_grad():
            algo.critic_target.net.flat.mul_(1.5)  # targets differ from the online critics
        out = []
        for gen_seed in (1, 2):
            algo.generator.manual_seed(gen_seed)
            _, info = algo.critic_loss(batch)
            out.append(float(info["td_loss"]))
        with torch.no_grad():
            a_next = torch.tanh(_mlp(algo.actor.net, batch.next_obs, 0)[:, :2])
            x = torch.cat([batch.next_obs, a_next], dim=1)
            q_next = torch.minimum(
                _mlp(algo.critic_target.net, x, 0)[:, 0], _mlp(algo.critic_target.net, x, 1)[:, 0]
            )
            y = batch.rewards + 0.9 * (1 - batch.dones) * q_next
            q = torch.cat([batch.obs, batch.actions], dim=1)
            td = [((_mlp(algo.critic.net, q, i)[:, 0] - y) ** 2).mean() for i in (0, 1)]
        out.append(float(sum(td) / 2))
        return out

    first, second, by_hand = td_losses(mean_backup=True)
    assert first == second and first == pytest.approx(by_hand, rel=1e-5)
    first, second, by_hand = td_losses(mean_backup=False)
    assert first != second and first != pytest.approx(by_hand, rel=1e-3)


def test_cql_rejects_contradictory_options() -> None:
    cls = get_algorithm("cql")
    for other in ("max_backup", "backup_entropy"):
        cfg = cls.config_class.from_dict({"mean_backup": True, other: True})
        with pytest.raises(ValueError, match="mean_backup"):
            cls(EnvSpec((3,), 2), cfg)
    cfg = cls.config_class.from_dict({"lagrange": True, "alpha_prime_init": 0.0})
    with pytest.raises(ValueError, match="alpha_prime_init"):
        cls(EnvSpec((3,), 2), cfg)


def test_cql_alpha_prime_starts_at_init() -> None:
    cls = get_algorithm("cql")
    for init in (1.0, math.e):
        cfg = cls.config_class.from_dict({"lagrange": True, "alpha_prime_init": init})
        algo: Any = cls(EnvSpec((3,), 2), cfg)
        assert float(algo.alpha_prime().detach()) == pytest.approx(init)


# ---------------------------------------------------------------------- option docs
@pytest.mark.parametrize("name", list_algorithms())
def test_every_option_is_documented(name: str) -> None:
    """Each config field has a docstring, and ``help()`` on the config class shows it."""
    config_class = get_algorithm(name).config_class
    fields = [f.name for f in dataclasses.fields(config_class)]
    assert list(config_class.option_docs) == fields  # dataclass order, inherited ones first
    undocumented = [k for k, (_, doc) in config_class.option_docs.items() if not doc]
    assert not undocumented, f"{config_class.__name__}: no docstring for {undocumented}"
    text = pydoc.render_doc(config_class, renderer=pydoc.plaintext)
    for field in fields:
        doc_start = config_class.option_docs[field][1].split()[:4]
        assert f"{field} = " in text and " ".join(doc_start) in " ".join(text.split()), field


def test_redefined_option_keeps_its_place_and_takes_the_new_doc() -> None:
    from offrl.algos.cql import CQLConfig
    from offrl.algos.sac import SACConfig

    assert list(CQLConfig.option_docs)[:3] == ["batch_size", "hidden", "activation"]
    names = list(CQLConfig.option_docs)
    assert names.index("actor_lr") == list(SACConfig.option_docs).index("actor_lr")
    assert CQLConfig.option_docs["actor_lr"][0] == "3e-05"
    assert "too fast offline" in CQLConfig.option_docs["actor_lr"][1]
    assert "too fast offline" not in SACConfig.option_docs["actor_lr"][1]


def test_checkpoints_before_the_composable_core_load_and_newer_ones_fail() -> None:
    """A format-1 state (no ``format`` key; TD3+BC's removed ``fused`` option in its config)
    rebuilds the same policy; a format this offrl does not know is refused by name."""

    from offrl.algos.base import CHECKPOINT_FORMAT, EnvSpec

    algo = get_algorithm("td3bc")(EnvSpec((3,), 2), seed=0)
    old = algo.state_dict()
    del old["format"]
    old["config"] = {**old["config"], "fused": True}
    back = Algorithm.from_state_dict(old)
    obs = torch.zeros(4, 3).numpy()
    assert (back.act(obs) == algo.act(obs)).all()
    newer = {**algo.state_dict(), "format": CHECKPOINT_FORMAT + 1}
    with pytest.raises(ValueError, match=f"format {CHECKPOINT_FORMAT + 1}"):
        Algorithm.from_state_dict(newer)
