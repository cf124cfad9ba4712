"""Data augmentation of continuous observations: S4RL's state transforms as batch transforms.

S4RL (Sinha, Mandlekar & Garg, 2021, "S4RL: Surprisingly Simple Self-Supervision for Offline
Reinforcement Learning in Robotics", CoRL, arXiv:2103.06326) trains an unchanged offline RL
algorithm on perturbed states: the critic sees ``Q(T(s_t), a_t)`` against a target built at
``T(s_{t+1})``, for a random transform ``T`` that keeps a state's meaning. Its section 3 studies
seven transforms; four need nothing but the batch, and are here, with the paper's settings
(its hyperparameter appendix) as defaults:

=============================  ========================================  =====================
transform                      ``T(s)``                                  default
=============================  ========================================  =====================
:class:`GaussianNoise`         ``s + eps``, ``eps ~ N(0, std^2 I)``      ``std = 3e-4``
:class:`UniformNoise`          ``s + eps``, ``eps ~ U(-bound, bound)``   ``bound = 3e-4``
:class:`AmplitudeScale`        ``s * z``, ``z ~ U(low, high)``           ``U(0.8, 1.2)``
:class:`StateMixup`            ``lam s_t + (1 - lam) s_{t+1}``           ``lam ~ Beta(0.4, 0.4)``
=============================  ========================================  =====================

(Dimension dropout and state switching did worse in the paper's study; adversarial states need
the critic's gradient, so they belong in an algorithm, not a sampler.)

The choices, and where the paper leaves them open:

* **Which states.** Noise and scaling perturb ``obs`` and, by default, ``next_obs`` too (the
  paper's target is taken at ``T(s_{t+1})``), each with its **own** draw: a perturbation models
  noise on one observation, and two steps of a trajectory are two observations. Mixup changes
  ``obs`` only: it mixes ``s_t`` with ``s_{t+1}``, and the matching ``s_{t+2}`` for ``next_obs``
  is not in a batch. Actions, rewards, dones, rows and next actions are never touched.
* **Element-wise draws.** ``eps`` and ``z`` have the shape of a state (one value per row and
  dimension); mixup draws one ``lam`` per row, so a mixed state lies on the segment from
  ``s_{t+1}`` to ``s_t``.
* **Scaling range.** The paper's appendix tunes ``U(alpha, beta)`` over ``alpha`` in {0.6, 0.8}
  and ``beta`` in {1.2, 1.4}; the default is the narrowest pair, ``U(0.8, 1.2)``, whose mean is 1
  (an unbiased perturbation).
* **Raw or normalised states.** The paper perturbs raw states (its scales are in the units of
  D4RL's observations). :class:`AugmentedSampler` therefore takes the run's
  :class:`~offrl.data.normalization.ObsNormalizer` and applies the transforms to the raw states
  ``obs * std + mean``, handing the algorithm their normalised image; the trainer does so unless
  ``TrainConfig.augment_space = "normalized"``, where one unit is one standard deviation of each
  dimension.
* **One augmented copy per update.** S4RL averages Q-values over ``N`` augmented copies of each
  state within one update; a batch transform gives one copy per update (``N = 1``), with fresh
  draws at every update. That keeps augmentation an option of the sampler, valid for any
  algorithm without touching its losses.

Every transform is a frozen dataclass of its options and a pure function ``(batch, generator)
-> batch``: all randomness comes from the ``torch.Generator`` passed in, one or two tensor ops a
transform (no Python loop over rows). :class:`Compose` applies several in order.
:class:`AugmentedSampler` wraps any :class:`~offrl.data.sampler.Sampler` with its own seeded
generator, kept in ``state_dict()``, so a resumed run draws what an uninterrupted one would.

On the command line a transform is a spec string, ``NAME`` or ``NAME:KEY=VALUE,...``
(``gaussian``, ``gaussian:std=1e-3``, ``scale:low=0.8,high=1.2``, ``mixup:alpha=0.4``);
:func:`parse_specs` reads them and :func:`canonical_specs` writes every option out
(``gaussian:std=0.0003,next_obs=true``), the form ``config.json`` records. Augmentation applies
to continuous state vectors only: :func:`check_augmentable` refuses images and non-float
(discrete) observations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from offrl.data.dataset import Dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import Batch, Sampler
from offrl.errors import CheckpointError, ConfigError, IncompatibleDataError
from offrl.rng import restore_generator

__all__ = [
    "Transform",
    "Augmentation",
    "GaussianNoise",
    "UniformNoise",
    "AmplitudeScale",
    "StateMixup",
    "Compose",
    "AugmentedSampler",
    "TRANSFORMS",
    "parse_spec",
    "parse_specs",
    "canonical_specs",
    "check_augmentable",
]


class Transform(Protocol):
    """A batch transform: a function of the batch and a generator (its only randomness)."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch: ...


# ---------------------------------------------------------------------- the transforms
class Augmentation:
    """Base of the spec-named transforms: a name, option checks, and the spec string."""

    name: ClassVar[str] = ""
    """The spec name (``gaussian``, ...)."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        raise NotImplementedError  # each transform defines it

    def spec(self) -> str:
        """The canonical spec string: the name and every option (``gaussian:std=0.0003,...``)."""
        values = ",".join(
            f"{f.name}={_format(getattr(self, f.name))}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )
        return f"{self.name}:{values}" if values else self.name

    def _check_number(self, field: str, low: float = 0.0) -> float:
        """The option ``field`` as a float; ``ConfigError`` unless it is a finite number
        greater than ``low``."""
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"option augment: {self.name} {field}={value!r} is not a number")
        if not (math.isfinite(value) and value > low):
            raise ConfigError(
                f"option augment: {self.name} {field}={value!r} must be a finite number > {low:g}"
            )
        return float(value)

    def _check_flag(self, field: str) -> None:
        value = getattr(self, field)
        if not isinstance(value, bool):
            raise ConfigError(f"option augment: {self.name} {field}={value!r} is not true/false")


@dataclass(frozen=True)
class GaussianNoise(Augmentation):
    """Zero-mean Gaussian noise on the states: ``s + std * N(0, I)`` (S4RL's best transform on
    D4RL locomotion)."""

    name: ClassVar[str] = "gaussian"
    std: float = 3e-4
    """Standard deviation of the noise, in the units of the states perturbed (S4RL: 3e-4)."""
    next_obs: bool = True
    """Also perturb ``next_obs`` (an independent draw), as S4RL's target does."""

    def __post_init__(self) -> None:
        self._check_number("std")
        self._check_flag("next_obs")

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        obs = batch.obs
        # [n, B, *obs_shape]: noise[0] for obs, noise[1] for next_obs.
        shape = (2 if self.next_obs else 1, *obs.shape)
        noise = torch.randn(shape, generator=generator, dtype=obs.dtype, device=obs.device)
        if not self.next_obs:
            return batch._replace(obs=torch.add(obs, noise[0], alpha=self.std))
        return batch._replace(
            obs=torch.add(obs, noise[0], alpha=self.std),
            next_obs=torch.add(batch.next_obs, noise[1], alpha=self.std),
        )


@dataclass(frozen=True)
class UniformNoise(Augmentation):
    """Zero-mean uniform noise on the states: ``s + U(-bound, bound)``."""

    name: ClassVar[str] = "uniform"
    bound: float = 3e-4
    """Half-width of the noise interval, in the units of the states (S4RL: 3e-4)."""
    next_obs: bool = True
    """Also perturb ``next_obs`` (an independent draw), as S4RL's target does."""

    def __post_init__(self) -> None:
        self._check_number("bound")
        self._check_flag("next_obs")

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        obs = batch.obs
        shape = (2 if self.next_obs else 1, *obs.shape)  # [n, B, *obs_shape]
        noise = torch.empty(shape, dtype=obs.dtype, device=obs.device)
        noise.uniform_(-self.bound, self.bound, generator=generator)
        if not self.next_obs:
            return batch._replace(obs=obs + noise[0])
        return batch._replace(obs=obs + noise[0], next_obs=batch.next_obs + noise[1])


@dataclass(frozen=True)
class AmplitudeScale(Augmentation):
    """Random amplitude scaling (from RAD, Laskin et al. 2020): ``s * z`` with ``z ~ U(low,
    high)`` drawn for every row and dimension."""

    name: ClassVar[str] = "scale"
    low: float = 0.8
    """Smallest factor (S4RL's appendix tunes 0.6 or 0.8)."""
    high: float = 1.2
    """Largest factor (S4RL's appendix tunes 1.2 or 1.4); ``low <= high``."""
    next_obs: bool = True
    """Also scale ``next_obs`` (an independent draw), as S4RL's target does."""

    def __post_init__(self) -> None:
        low, high = self._check_number("low"), self._check_number("high")
        self._check_flag("next_obs")
        if low > high:
            raise ConfigError(f"option augment: scale low={low!r} is above high={high!r}")

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        obs = batch.obs
        shape = (2 if self.next_obs else 1, *obs.shape)  # [n, B, *obs_shape]
        factor = torch.empty(shape, dtype=obs.dtype, device=obs.device)
        factor.uniform_(self.low, self.high, generator=generator)
        if not self.next_obs:
            return batch._replace(obs=obs * factor[0])
        return batch._replace(obs=obs * factor[0], next_obs=batch.next_obs * factor[1])


@dataclass(frozen=True)
class StateMixup(Augmentation):
    """State mixup: ``obs`` becomes ``lam * s_t + (1 - lam) * s_{t+1}`` with one ``lam ~
    Beta(alpha, alpha)`` per row; ``next_obs`` is kept (``s_{t+2}`` is not in the batch)."""

    name: ClassVar[str] = "mixup"
    alpha: float = 0.4
    """Both parameters of the Beta distribution of ``lam`` (S4RL: 0.4: most ``lam`` near 0 or
    1, so most mixed states stay near one of the two)."""

    def __post_init__(self) -> None:
        self._check_number("alpha")

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        obs = batch.obs
        # Beta(a, a) is the first coordinate of Dirichlet(a, a); torch.distributions.Beta takes
        # no generator, the Dirichlet kernel it calls does.
        concentration = torch.full(
            (obs.shape[0], 2), self.alpha, dtype=obs.dtype, device=obs.device
        )
        lam = torch._sample_dirichlet(concentration, generator=generator)[:, 0]  # [B]
        lam = lam.view(-1, *([1] * (obs.dim() - 1)))  # [B, 1, ...]: one lam per row
        return batch._replace(obs=torch.lerp(batch.next_obs, obs, lam))  # next + lam (obs - next)


@dataclass(frozen=True)
class Compose:
    """Several transforms applied in order, drawing from one generator."""

    transforms: tuple[Transform, ...] = ()
    """The transforms, first applied first."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        for transform in self.transforms:
            batch = transform(batch, generator)
        return batch

    def specs(self) -> tuple[str, ...]:
        """The canonical spec strings of the spec-named transforms (see :func:`parse_specs`)."""
        return tuple(t.spec() for t in self.transforms if isinstance(t, Augmentation))


TRANSFORMS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (GaussianNoise, UniformNoise, AmplitudeScale, StateMixup)
}
"""The spec names and their transform classes."""


# ---------------------------------------------------------------------- specs
def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(float(value))  # repr: the shortest string that reads back exactly


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_spec(text: str) -> Augmentation:
    """One transform from its spec, ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``.

    Raises:
        ConfigError: an unknown name or option, a repeated option, or a bad value (the message
            names the option and what it takes).
    """
    if not isinstance(text, str):
        raise ConfigError(f"option augment: expected a spec string, got {text!r}")
    name, colon, options = text.strip().partition(":")
    name = name.strip().lower()
    cls = TRANSFORMS.get(name)
    if cls is None:
        raise ConfigError(
            f"option augment: unknown augmentation {name!r} in {text!r} "
            f"(choose from {', '.join(TRANSFORMS)})"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    takes = ", ".join(fields)
    kwargs: dict[str, Any] = {}
    for item in options.split(",") if colon and options.strip() else []:
        key, equals, value = (s.strip() for s in item.partition("="))
        if not equals or not key:
            raise ConfigError(
                f"option augment: {text!r}: expected KEY=VALUE after '{name}:', got {item!r} "
                f"({name} takes {takes})"
            )
        if key not in fields:
            raise ConfigError(f"option augment: {name} has no option {key!r} (it takes {takes})")
        if key in kwargs:
            raise ConfigError(f"option augment: {text!r} gives {key} twice")
        if isinstance(fields[key].default, bool):
            if value.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"option augment: {name} {key}={value!r} is not true/false")
            kwargs[key] = value.lower() in _TRUE
            continue
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise ConfigError(f"option augment: {name} {key}={value!r} is not a number") from None
    return cls(**kwargs)


def parse_specs(specs: Iterable[str]) -> Compose:
    """The transforms of several specs, composed in order (see :func:`parse_spec`)."""
    if isinstance(specs, str):
        raise ConfigError(f"option augment: expected a list of specs, got the string {specs!r}")
    return Compose(tuple(parse_spec(s) for s in specs))


def canonical_specs(specs: Iterable[str]) -> tuple[str, ...]:
    """The specs with every option written out: ``("gaussian",)`` ->
    ``("gaussian:std=0.0003,next_obs=true",)``. Two lists that configure the same transforms
    give the same canonical form."""
    return parse_specs(specs).specs()


def check_augmentable(dataset: Dataset, specs: Sequence[str] = ()) -> None:
    """Refuse augmentation of data it cannot apply to: observations must be float vectors.

    Raises:
        IncompatibleDataError: image observations (more than one dimension) or non-float
            (integer, discrete) observations, naming the field.
    """
    asked = " ".join(f"--augment {s}" for s in specs) or "augmentation"
    obs = dataset.observations
    if not np.issubdtype(obs.dtype, np.floating):
        raise IncompatibleDataError(
            f"observations: {asked} perturbs continuous states, and this dataset's "
            f"observations are {obs.dtype} (images or discrete states); train without it"
        )
    if len(dataset.obs_shape) != 1:
        raise IncompatibleDataError(
            f"observations: {asked} perturbs state vectors, and this dataset's observations "
            f"have shape {tuple(dataset.obs_shape)} (images need image augmentations, such as "
            "random shifts); train without it"
        )


# ---------------------------------------------------------------------- the sampler
_STREAM = 0xA5 << 8 | 0x4E
"""Mixed into the seed: the augmentation generator's stream differs from the sampler's, which
the trainer seeds with the same run seed."""


class AugmentedSampler:
    """A sampler whose batches pass through transforms, with its own seeded generator.

    Args:
        sampler: any :class:`~offrl.data.sampler.Sampler` (its batches are drawn first).
        transform: a transform (``Compose``, ``GaussianNoise``...) or spec strings
            (:func:`parse_specs`).
        seed: seeds the augmentation generator (a stream apart from the inner sampler's, even
            for the same seed).
        device: the device of the batches (and so of the generator).
        normalizer: the statistics the inner sampler's observations were normalised with: the
            transforms then apply to the raw states ``obs * std + mean`` (S4RL's units) and the
            batch gets their normalised image. ``None``: they apply to the batch as it is.

    ``state_dict()`` is the inner sampler's, plus ``"augment"``: the generator state and the
    number of batches drawn, so that after ``load_state_dict`` it draws exactly what the
    uninterrupted sampler would have.
    """

    def __init__(
        self,
        sampler: Sampler,
        transform: Transform | Sequence[str],
        seed: int = 0,
        device: str | torch.device = "cpu",
        normalizer: ObsNormalizer | None = None,
    ) -> None:
        self.sampler = sampler
        self.transform: Transform = (
            parse_specs(transform) if isinstance(transform, Sequence) else transform
        )
        self.seed = seed
        self.draws = 0
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self._stream_seed(self.seed))
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        if normalizer is not None:
            self.mean = torch.as_tensor(normalizer.mean, device=self.device)
            self.std = torch.as_tensor(normalizer.std, device=self.device)

    @staticmethod
    def _stream_seed(*ints: int) -> int:
        return int(np.random.SeedSequence([*ints, _STREAM]).generate_state(1)[0])

    def sample(self) -> Batch:
        """The inner sampler's next batch, transformed."""
        batch = self.sampler.sample()
        self.draws += 1
        if not batch.obs.is_floating_point():
            raise IncompatibleDataError(
                f"observations: augmentation perturbs continuous states, and this batch's are "
                f"{batch.obs.dtype}"
            )
        if self.mean is None or self.std is None:
            return self.transform(batch, self.generator)
        mean, std = self.mean, self.std
        raw = batch._replace(
            obs=torch.addcmul(mean, batch.obs, std),
            next_obs=torch.addcmul(mean, batch.next_obs, std),
        )
        out = self.transform(raw, self.generator)
        # A state no transform changed keeps its exact normalised values.
        return out._replace(
            obs=batch.obs if out.obs is raw.obs else (out.obs - mean) / std,
            next_obs=batch.next_obs
            if out.next_obs is raw.next_obs
            else (out.next_obs - mean) / std,
        )

    def state_dict(self) -> dict[str, Any]:
        """The inner sampler's state, with ``"augment"``: this generator's state and draws."""
        return {
            **self.sampler.state_dict(),
            "augment": {"generator": self.generator.get_state(), "draws": self.draws},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the inner sampler and the generator (re-seeded from the seed and the number
        of draws if the state comes from another kind of device: see :mod:`offrl.rng`).

        Raises:
            CheckpointError: ``state`` has no ``"augment"`` entry (it was not saved by an
                ``AugmentedSampler``).
        """
        inner = dict(state)
        saved = inner.pop("augment", None)
        if not isinstance(saved, dict) or "generator" not in saved:
            raise CheckpointError(
                "sampler state: no augmentation generator in it (saved by a run without "
                "augmentation?)"
            )
        self.sampler.load_state_dict(inner)
        self.draws = int(saved.get("draws", 0))
        restore_generator(self.generator, saved["generator"], self.seed, _STREAM, self.draws)
