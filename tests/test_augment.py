"""Data augmentation (offrl.data.augment): each transform against hand-computed values and its
distribution, composition, the seeded sampler's exact resume, spec parsing and its errors, and
the trainer / CLI / grid options."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _devices import DEVICES

from offrl.bench.grid import GridSpec, grid_cells, run_grid, train_command
from offrl.cli import main
from offrl.data import Dataset
from offrl.data.augment import (
    AmplitudeScale,
    AugmentedSampler,
    Compose,
    GaussianNoise,
    StateMixup,
    UniformNoise,
    canonical_specs,
    check_augmentable,
    parse_spec,
    parse_specs,
)
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import Batch, TensorSampler
from offrl.errors import CheckpointError, ConfigError, IncompatibleDataError, ResumeError
from offrl.train import TrainConfig, load_checkpoint, read_metrics, train

B, D, A = 256, 17, 6  # a standard batch of a Hopper-sized problem


def _batch(rows: int = B, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(rows, D, generator=g),
        actions=torch.rand(rows, A, generator=g) * 2 - 1,
        rewards=torch.randn(rows, generator=g),
        next_obs=torch.randn(rows, D, generator=g),
        dones=(torch.rand(rows, generator=g) < 0.1).float(),
        rows=torch.arange(rows),
        next_actions=torch.rand(rows, A, generator=g),
    )


def _gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_rest_untouched(before: Batch, after: Batch) -> None:
    """Actions, rewards, dones, rows and next actions are the very tensors they were."""
    for name in ("actions", "rewards", "dones", "rows", "next_actions"):
        assert getattr(after, name) is getattr(before, name), name


def _assert_same_layout(before: Batch, after: Batch) -> None:
    for name in ("obs", "next_obs"):
        x, y = getattr(before, name), getattr(after, name)
        assert (y.shape, y.dtype, y.device) == (x.shape, x.dtype, x.device), name


# ---------------------------------------------------------------------- the transforms
def test_gaussian_noise_is_std_times_the_generators_normal_draws() -> None:
    batch = _batch()
    out = GaussianNoise(std=0.5)(batch, _gen())
    noise = torch.randn((2, B, D), generator=_gen())  # the same draws, by hand
    torch.testing.assert_close(out.obs, batch.obs + 0.5 * noise[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.next_obs, batch.next_obs + 0.5 * noise[1], rtol=0, atol=1e-6)
    _assert_same_layout(batch, out)
    _assert_rest_untouched(batch, out)

    # On zero states the output is the noise itself; next_obs=false leaves next_obs alone.
    zeros = batch._replace(obs=torch.zeros(B, D))
    only_obs = GaussianNoise(std=2.0, next_obs=False)(zeros, _gen())
    assert torch.equal(only_obs.obs, 2.0 * torch.randn((1, B, D), generator=_gen())[0])
    assert only_obs.next_obs is zeros.next_obs


def test_gaussian_noise_has_the_papers_scale_and_independent_draws() -> None:
    rows = 20_000
    zeros = _batch(rows)._replace(obs=torch.zeros(rows, D), next_obs=torch.zeros(rows, D))
    assert GaussianNoise().std == 3e-4  # S4RL's sigma
    out = GaussianNoise()(zeros, _gen())
    for noise in (out.obs, out.next_obs):
        assert abs(noise.mean().item()) < 3e-4 * 0.01
        assert noise.std().item() == pytest.approx(3e-4, rel=0.01)
    # obs and next_obs get their own draws: uncorrelated (|r| of 340k pairs ~ 0.002).
    r = np.corrcoef(out.obs.flatten().numpy(), out.next_obs.flatten().numpy())[0, 1]
    assert abs(r) < 0.01


def test_uniform_noise_stays_within_its_bound_with_the_uniform_variance() -> None:
    batch = _batch()
    out = UniformNoise(bound=0.25)(batch, _gen())
    noise = torch.empty((2, B, D)).uniform_(-0.25, 0.25, generator=_gen())  # by hand
    torch.testing.assert_close(out.obs, batch.obs + noise[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.next_obs, batch.next_obs + noise[1], rtol=0, atol=1e-6)
    _assert_same_layout(batch, out)
    _assert_rest_untouched(batch, out)

    rows = 20_000
    zeros = _batch(rows)._replace(obs=torch.zeros(rows, D), next_obs=torch.zeros(rows, D))
    assert UniformNoise().bound == 3e-4  # S4RL's alpha
    drawn = UniformNoise()(zeros, _gen()).obs
    assert drawn.abs().max().item() <= 3e-4
    assert drawn.var().item() == pytest.approx((3e-4) ** 2 / 3, rel=0.02)  # (2b)^2 / 12


def test_amplitude_scale_multiplies_each_element_by_a_factor_in_range() -> None:
    # low == high: the factor is exactly that number, by hand.
    batch = _batch(2)._replace(
        obs=torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -4.0]]),
        next_obs=torch.tensor([[2.0, 2.0, 2.0], [-1.0, 1.0, 0.25]]),
    )
    doubled = AmplitudeScale(low=2.0, high=2.0)(batch, _gen())
    assert torch.equal(doubled.obs, torch.tensor([[2.0, -4.0, 6.0], [1.0, 0.0, -8.0]]))
    assert torch.equal(doubled.next_obs, torch.tensor([[4.0, 4.0, 4.0], [-2.0, 2.0, 0.5]]))
    _assert_rest_untouched(batch, doubled)

    batch = _batch()
    out = AmplitudeScale()(batch, _gen())  # U(0.8, 1.2)
    factor = torch.empty((2, B, D)).uniform_(0.8, 1.2, generator=_gen())
    assert torch.equal(out.obs, batch.obs * factor[0])
    assert torch.equal(out.next_obs, batch.next_obs * factor[1])
    ratio = out.obs / batch.obs
    assert ratio.min().item() >= 0.8 - 1e-6 and ratio.max().item() <= 1.2 + 1e-6
    assert len(torch.unique(ratio[0])) == D  # one factor per element, not one per row
    _assert_same_layout(batch, out)


def test_mixup_is_a_convex_combination_with_one_beta_lambda_per_row() -> None:
    # Hand-computed: with lam = 0.25 and 1.0 the rows are 0.25 s + 0.75 s' and s.
    obs = torch.tensor([[0.0, 4.0], [2.0, -2.0]])
    nxt = torch.tensor([[4.0, 0.0], [6.0, 6.0]])
    lam = torch._sample_dirichlet(torch.full((2, 2), 0.4), generator=_gen())[:, 0]
    out = StateMixup()(_batch(2)._replace(obs=obs, next_obs=nxt), _gen())
    expected = lam[:, None] * obs + (1 - lam[:, None]) * nxt
    torch.testing.assert_close(out.obs, expected, rtol=0, atol=1e-6)
    assert out.next_obs is nxt  # s_{t+2} is not in the batch: next_obs is kept

    # States 0 and 1: each row of the output is 1 - lam, one lam for every dimension of a row.
    rows = 50_000
    batch = _batch(rows)._replace(obs=torch.zeros(rows, D), next_obs=torch.ones(rows, D))
    mixed = StateMixup()(batch, _gen())
    lams = 1 - mixed.obs
    assert torch.allclose(lams, lams[:, :1].expand(-1, D), atol=1e-6)
    assert lams.min().item() >= 0 and lams.max().item() <= 1
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.1389.
    assert lams[:, 0].mean().item() == pytest.approx(0.5, abs=0.01)
    assert lams[:, 0].var().item() == pytest.approx(1 / (4 * 1.8), rel=0.03)
    _assert_rest_untouched(batch, mixed)


def test_compose_applies_in_order_from_one_generator() -> None:
    zeros = _batch()._replace(obs=torch.zeros(B, D), next_obs=torch.zeros(B, D))
    double = AmplitudeScale(low=2.0, high=2.0)
    # Noise, then doubling: twice the noise drawn first.
    noise_then_scale = Compose((GaussianNoise(std=1.0), double))(zeros, _gen())
    assert torch.equal(noise_then_scale.obs, 2 * torch.randn((2, B, D), generator=_gen())[0])
    # Doubling zeros, then noise: the noise, drawn after the scale factors (one generator).
    scale_then_noise = Compose((double, GaussianNoise(std=1.0)))(zeros, _gen())
    g = _gen()
    torch.empty((2, B, D)).uniform_(2.0, 2.0, generator=g)
    assert torch.equal(scale_then_noise.obs, torch.randn((2, B, D), generator=g)[0])
    # Two noises are two successive draws.
    twice = Compose((GaussianNoise(std=1.0), GaussianNoise(std=1.0)))(zeros, _gen())
    g = _gen()
    first, second = torch.randn((2, B, D), generator=g), torch.randn((2, B, D), generator=g)
    torch.testing.assert_close(twice.obs, first[0] + second[0], rtol=0, atol=1e-6)
    assert not torch.equal(first, second)
    assert Compose()(zeros, _gen()) is zeros


@pytest.mark.parametrize(
    "spec", ["gaussian", "uniform", "scale", "mixup", "gaussian:next_obs=false"]
)
def test_same_generator_seed_same_output(spec: str) -> None:
    batch, transform = _batch(), parse_spec(spec)
    a, b, c = (transform(batch, _gen(s)) for s in (3, 3, 4))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.next_obs, b.next_obs)
    assert not torch.equal(a.obs, c.obs)
    assert a.obs.dtype == torch.float32 and a.obs.shape == (B, D)


def test_float64_batches_stay_float64() -> None:
    batch = _batch()._replace(obs=_batch().obs.double(), next_obs=_batch().next_obs.double())
    for spec in ("gaussian", "uniform", "scale", "mixup"):
        out = parse_spec(spec)(batch, _gen())
        assert out.obs.dtype == out.next_obs.dtype == torch.float64, spec


# ---------------------------------------------------------------------- the sampler
def _dataset(n: int = 500, images: bool = False, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    shape = (3, 8, 8) if images else (D,)
    obs = rng.normal(3.0, 2.0, (n, *shape)).astype(np.float32)
    if images:
        obs = rng.integers(0, 255, (n, *shape), dtype=np.uint8)
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    return Dataset.from_arrays(
        observations=obs,
        actions=rng.uniform(-1, 1, (n, A)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=np.roll(obs, -1, axis=0),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
    )


def _sampler(seed: int = 0, specs: tuple[str, ...] = ("gaussian:std=0.1", "mixup")) -> Any:
    return AugmentedSampler(TensorSampler(_dataset(), batch_size=32, seed=seed), specs, seed=seed)


def test_sampler_resumes_the_uninterrupted_draws() -> None:
    uninterrupted = _sampler()
    expected = [uninterrupted.sample() for _ in range(10)]

    first = _sampler()
    for _ in range(4):
        first.sample()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # through a checkpoint file's round trip
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state) == {"generator", "draws", "augment"}  # the inner sampler's keys, kept
    assert state["augment"]["draws"] == 4

    resumed = _sampler(seed=0)
    resumed.load_state_dict(state)
    for want in expected[4:]:
        got = resumed.sample()
        assert torch.equal(got.obs, want.obs) and torch.equal(got.next_obs, want.next_obs)
        assert torch.equal(got.actions, want.actions) and torch.equal(got.rows, want.rows)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ["gaussian", "uniform", "scale", "mixup"])
def test_each_transform_samples_and_resumes_on_each_device(device: str, spec: str) -> None:
    data = _dataset()
    norm = ObsNormalizer.from_dataset(data)

    def make() -> AugmentedSampler:
        inner = TensorSampler(data, batch_size=32, seed=2, device=device)
        return AugmentedSampler(inner, [spec], seed=2, device=device, normalizer=norm)

    sampler = make()
    first = sampler.sample()
    assert first.obs.device.type == device and first.obs.dtype == torch.float32
    assert bool(torch.isfinite(first.obs).all()) and bool(torch.isfinite(first.next_obs).all())
    state = sampler.state_dict()
    expected = sampler.sample()
    resumed = make()
    resumed.load_state_dict(state)
    got = resumed.sample()
    assert torch.equal(got.obs, expected.obs) and torch.equal(got.next_obs, expected.next_obs)


def test_sampler_generator_is_seeded_apart_from_the_inner_sampler() -> None:
    a, b, c = _sampler(0), _sampler(0), _sampler(1)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert not torch.equal(a.generator.get_state(), c.generator.get_state())
    assert not torch.equal(a.generator.get_state(), a.sampler.generator.get_state())
    # The augmentation changes the states only: the same rows as the bare sampler, perturbed.
    bare = TensorSampler(_dataset(), batch_size=32, seed=0).sample()
    aug = a.sample()
    assert torch.equal(aug.rows, bare.rows) and torch.equal(aug.actions, bare.actions)
    assert not torch.equal(aug.obs, bare.obs)


def test_sampler_state_without_augmentation_is_refused() -> None:
    plain = TensorSampler(_dataset(), batch_size=32).state_dict()
    with pytest.raises(CheckpointError, match="no augmentation generator"):
        _sampler().load_state_dict(plain)


def test_raw_space_perturbs_the_unnormalised_states() -> None:
    data = _dataset()
    norm = ObsNormalizer.from_dataset(data)
    inner = TensorSampler(data, batch_size=32, seed=0)
    doubled = AugmentedSampler(inner, Compose((AmplitudeScale(2.0, 2.0),)), normalizer=norm)
    batch = TensorSampler(data, batch_size=32, seed=0).sample()  # the same rows, untransformed
    out = doubled.sample()
    mean, std = torch.as_tensor(norm.mean), torch.as_tensor(norm.std)
    # raw -> 2 raw -> normalised: (2 (x std + mean) - mean) / std = 2 x + mean / std.
    torch.testing.assert_close(out.obs, 2 * batch.obs + mean / std, rtol=1e-5, atol=1e-5)
    # Mixup leaves next_obs alone: bit for bit the normalised values (no round trip).
    mixup = AugmentedSampler(TensorSampler(data, batch_size=32), ["mixup"], normalizer=norm)
    assert torch.equal(
        mixup.sample().next_obs, TensorSampler(data, batch_size=32).sample().next_obs
    )


def test_images_and_discrete_observations_are_refused() -> None:
    check_augmentable(_dataset(), ["gaussian"])  # float state vectors: fine
    with pytest.raises(IncompatibleDataError, match=r"observations: --augment gaussian.*uint8"):
        check_augmentable(_dataset(images=True), ["gaussian"])
    floats = _dataset(images=True)
    floats = Dataset.from_arrays(
        observations=floats.observations.astype(np.float32),
        actions=floats.actions,
        rewards=floats.rewards,
        next_observations=floats.next_observations.astype(np.float32),
    )
    with pytest.raises(IncompatibleDataError, match=r"shape \(3, 8, 8\).*image augmentations"):
        check_augmentable(floats, ["scale"])
    # Discrete states as byte vectors (Atari RAM, tabular state codes): not continuous.
    codes = np.arange(40, dtype=np.uint8)[:, None] % 5
    tabular = Dataset.from_arrays(codes, np.zeros(40, np.int64), np.zeros(40, np.float32))
    with pytest.raises(IncompatibleDataError, match=r"observations: augmentation .* uint8"):
        check_augmentable(tabular)
    # A sampler handing out integer observations is refused at the first batch.
    int_batch = _batch()._replace(obs=torch.zeros(B, D, dtype=torch.int64))

    class Fixed:
        def sample(self) -> Batch:
            return int_batch

        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: dict[str, Any]) -> None: ...

    with pytest.raises(IncompatibleDataError, match="int64"):
        AugmentedSampler(Fixed(), ["gaussian"]).sample()


# ---------------------------------------------------------------------- specs
def test_specs_parse_with_the_papers_defaults_and_their_options() -> None:
    assert parse_spec("gaussian") == GaussianNoise(std=3e-4, next_obs=True)
    assert parse_spec("gaussian:std=1e-3") == GaussianNoise(std=1e-3)
    assert parse_spec(" Uniform : bound = 0.01 ") == UniformNoise(bound=0.01)
    assert parse_spec("scale") == AmplitudeScale(low=0.8, high=1.2)
    assert parse_spec("scale:low=0.6,high=1.4,next_obs=0") == AmplitudeScale(0.6, 1.4, False)
    assert parse_spec("mixup:alpha=0.2") == StateMixup(alpha=0.2)
    assert parse_spec("gaussian:") == GaussianNoise()
    composed = parse_specs(["scale", "gaussian:std=1e-3"])
    assert composed.transforms == (AmplitudeScale(), GaussianNoise(std=1e-3))
    canon = canonical_specs(["gaussian", "scale:high=1.2,low=0.8"])
    assert canon == ("gaussian:std=0.0003,next_obs=true", "scale:low=0.8,high=1.2,next_obs=true")
    assert canonical_specs(canon) == canon  # a fixed point: what config.json records reads back
    assert canonical_specs(["mixup"]) == ("mixup:alpha=0.4",)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gausian", "unknown augmentation 'gausian'.*choose from gaussian, uniform, scale, mixup"),
        ("", "unknown augmentation ''"),
        ("gaussian:sd=1", "gaussian has no option 'sd' \\(it takes std, next_obs\\)"),
        ("mixup:std=1", "mixup has no option 'std' \\(it takes alpha\\)"),
        ("gaussian:std", "expected KEY=VALUE after 'gaussian:', got 'std'"),
        ("gaussian:=1", "expected KEY=VALUE"),
        ("gaussian:std=abc", "gaussian std='abc' is not a number"),
        ("gaussian:std=-1", "gaussian std=-1.0 must be a finite number > 0"),
        ("gaussian:std=0", "std=0.0 must be a finite number > 0"),
        ("uniform:bound=inf", "uniform bound=inf must be a finite number"),
        ("scale:low=nan", "scale low=nan must be a finite number"),
        ("scale:low=1.3", "scale low=1.3 is above high=1.2"),
        ("mixup:alpha=0", "mixup alpha=0.0 must be a finite number > 0"),
        ("gaussian:next_obs=2", "gaussian next_obs='2' is not true/false"),
        ("gaussian:std=1,std=2", "gives std twice"),
    ],
)
def test_bad_specs_are_refused_naming_the_option(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^option augment: .*" + message):
        parse_spec(spec)


def test_bad_options_built_in_python_are_refused_too() -> None:
    with pytest.raises(ConfigError, match="gaussian std='1' is not a number"):
        GaussianNoise(std="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="next_obs=1 is not true/false"):
        UniformNoise(next_obs=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expected a list of specs"):
        parse_specs("gaussian")
    with pytest.raises(ConfigError, match="expected a spec string"):
        parse_specs([GaussianNoise()])  # type: ignore[list-item]


def test_train_config_checks_and_records_the_specs() -> None:
    cfg = TrainConfig(augment=("gaussian", "mixup:alpha=0.5"))
    assert cfg.augment == ("gaussian:std=0.0003,next_obs=true", "mixup:alpha=0.5")
    assert TrainConfig(augment=["scale"]).augment == ("scale:low=0.8,high=1.2,next_obs=true",)
    assert TrainConfig().augment == () and TrainConfig().augment_space == "raw"
    with pytest.raises(ConfigError, match="option augment: expected tuple"):
        TrainConfig(augment="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="option augment: unknown augmentation 'noise'"):
        TrainConfig(augment=("noise",))
    with pytest.raises(ConfigError, match="option augment_space"):
        TrainConfig(augment_space="both")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- training
DATASET = "pendulum-medium-v0"


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, (where, a, b)


def _records(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the wall-clock speed column."""
    return [
        {k: v for k, v in r.items() if k != "updates_per_s"}
        for r in read_metrics(run / "metrics.jsonl")
    ]


def _cfg(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        algo="td3bc",
        dataset=DATASET,
        out=str(out),
        steps=200,
        seed=1,
        eval_every=0,
        eval_episodes=1,
        log_every=50,
        checkpoint_every=100,
        progress=False,
        threads=1,
        augment=("gaussian:std=0.01", "scale:low=0.9,high=1.1"),
        algo_config={"hidden": [32, 32], "batch_size": 64},
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 200-step TD3+BC run with augmentation, checkpointed at 100 and 200."""
    out = tmp_path_factory.mktemp("augment") / "A"
    train(_cfg(out))
    return out


def test_training_with_augmentation_resumes_bit_for_bit(
    augmented_run: Path, tmp_path: Path
) -> None:
    # A run killed after its step-100 checkpoint: latest.pt is that checkpoint.
    run = tmp_path / "B"
    shutil.copytree(augmented_run, run)
    ckpts = run / "checkpoints"
    (ckpts / "step_200.pt").unlink()
    shutil.copy(ckpts / "step_100.pt", ckpts / "latest.pt")
    (run / "final.json").unlink()
    train(_cfg(run), resume=True)

    a = load_checkpoint(augmented_run / "checkpoints" / "latest.pt")
    b = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 200
    assert b["sampler"]["augment"]["draws"] == 200
    _assert_same(a["algo"], b["algo"], "algo")
    _assert_same(a["sampler"], b["sampler"], "sampler")
    assert _records(run) == _records(augmented_run)
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["train"]["augment"] == [
        "gaussian:std=0.01,next_obs=true",
        "scale:low=0.9,high=1.1,next_obs=true",
    ]
    assert recorded["train"]["augment_space"] == "raw"


def test_augmentation_changes_what_is_learned(augmented_run: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    train(_cfg(plain, augment=()))
    a = load_checkpoint(augmented_run / "checkpoints" / "latest.pt")
    p = load_checkpoint(plain / "checkpoints" / "latest.pt")
    assert "augment" not in p["sampler"]
    # The same batches of rows (the inner sampler's state is the same), other parameters.
    assert torch.equal(a["sampler"]["generator"], p["sampler"]["generator"])
    assert not torch.equal(a["algo"]["critic"]["net.flat"], p["algo"]["critic"]["net.flat"])
    losses = [r for r in read_metrics(plain / "metrics.jsonl") if r["kind"] == "train"]
    assert losses and all(np.isfinite(r["critic_loss"]) for r in losses)


def test_resume_with_other_augmentation_is_refused(augmented_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "C"
    shutil.copytree(augmented_run, run)
    for change in ({"augment": ("gaussian",)}, {"augment": ()}, {"augment_space": "normalized"}):
        with pytest.raises(ResumeError, match="other options"):
            train(_cfg(run, steps=300, **change), resume=True, allow_changes=["steps"])
    with pytest.raises(ResumeError, match="cannot change on resume"):
        train(_cfg(run, augment=()), resume=True, allow_changes=["augment"])
    # The same specs written another way are the same options: the resume goes ahead.
    same = ("gaussian:next_obs=1,std=0.01", "scale:high=1.1,low=0.9")
    train(_cfg(run, steps=250, augment=same), resume=True, allow_changes=["steps"])
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 250


def test_train_cli_takes_repeated_augment_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "train", "--algo", "bc", "--dataset", DATASET, "--steps", "20", "--eval-every", "0",
        "--eval-episodes", "1", "--log-every", "10", "--threads", "1", "--no-progress",
        "--set", "hidden=[16,16]", "--out", str(out),
    ]  # fmt: skip
    assert main([*args, "--augment", "scale:low=0.9,high=1.1", "--augment", "mixup"]) == 0
    recorded = json.loads((out / "config.json").read_text())["train"]["augment"]
    assert recorded == ["scale:low=0.9,high=1.1,next_obs=true", "mixup:alpha=0.4"]
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "bad"), "--augment", "scale:lo=0.9"]) == 2
    assert "offrl: error: option augment: scale has no option 'lo'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_bench_grid_passes_augmentation_to_every_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid"
    args = ["bench", "run", "--algos", "td3bc", "--datasets", DATASET, "--seeds", "0,1"]
    assert main([*args, "--augment", "gaussian", "--out", str(out), "--dry-run"]) == 0
    manifest = json.loads((out / "grid.json").read_text())
    assert manifest["augment"] == ["gaussian:std=0.0003,next_obs=true"]
    spec = GridSpec.from_dict(manifest)
    command = train_command(spec, grid_cells(spec)[0], out)
    assert "--augment gaussian:std=0.0003,next_obs=true" in command
    # The command reproduces the cell: it parses back to the cell's TrainConfig options.
    from offrl.cli import build_parser

    parsed = build_parser().parse_args(command.split()[1:])
    assert canonical_specs(parsed.augment) == tuple(manifest["augment"])
    # Augmentation is part of the protocol: the grid directory refuses another.
    with pytest.raises(ValueError, match="augment"):
        run_grid(GridSpec(["td3bc"], [DATASET]), out, dry_run=True, log=print)
    capsys.readouterr()
