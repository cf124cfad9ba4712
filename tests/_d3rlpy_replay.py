"""Replaying d3rlpy 2.8.1's recorded updates (``benchmarks/d3rlpy/same_update_<algo>.py``) in
offrl: the tolerances, the batches, how offrl's generator gets d3rlpy's random draws, and the
SAC-family update composed in d3rlpy's order from offrl's own losses.

Tolerances (:data:`TOLERANCE`). The two libraries sum in other orders (batched ensemble
matmuls against per-critic ``nn.Linear``; the fused Adam kernel against ``torch.optim.Adam``'s
loop), so equal updates agree to a few roundoffs per operation. Each script records its runs in
float32 and again in float64. In float32 eight updates grow that to ~1e-7 in the weights, and
1e-5 is still ~100x below how far the updates move them (each test checks that too). In float64
the same updates agree to ~1e-13, so 1e-9 separates rounding from any real difference by
orders of magnitude, even a difference eight updates barely grow (a temperature loss in alpha
instead of log alpha moves log alpha by 1e-7). One more thing float32 cannot settle: Adam's
first step is ``lr * g / (|g| + eps)``, so a gradient element that cancels to float32's
rounding level (|g| ~ 1e-9, below eps = 1e-8; CQL's critics have a few such among their 144k)
steps by up to ``lr`` in one library and less in the other. Such an element differs by ~1e-4
however exact the maths; in float64 its gradient is ~1e-11 in both and the step ~0.

Random draws. d3rlpy draws from torch's global generator, seeded with ``noise_seed + k``
before update ``k``. Where offrl draws the same shapes in the same order, its generator is
seeded the same (SAC, BC). Where offrl consumes the same draws in another order or layout
(CQL's uniform, pi(s) and pi(s') proposals), the d3rlpy script records them and
:class:`ScriptedDraws` hands them to offrl's own, unchanged ``torch.rand``/``torch.randn``
calls on its generator: the noise is the same numbers, offrl's code is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from offrl.algos.base import soft_update
from offrl.algos.sac import SAC
from offrl.data.sampler import Batch

DTYPES = ("float32", "float64")
"""The recorded runs' dtypes (each script records both)."""


@dataclass(frozen=True)
class Tolerance:
    """What "equal" means in one dtype."""

    weights: float
    """Largest accepted absolute weight difference after the recorded updates."""
    rel: float
    """Relative tolerance of each update's reported losses."""
    abs: float
    """Absolute tolerance of each update's reported losses."""


TOLERANCE = {
    # float32: unit roundoff 6e-8; differences seen 1e-8..3e-7 (weights), 1e-7 (losses).
    "float32": Tolerance(weights=1e-5, rel=1e-5, abs=1e-6),
    # float64: unit roundoff 1e-16; differences seen <= 4e-13 (weights). d3rlpy sums its
    # critics' TD losses into a float32 tensor, so its reported critic loss is float32-rounded.
    "float64": Tolerance(weights=1e-9, rel=1e-7, abs=1e-9),
}
WEIGHT_TOL = TOLERANCE["float32"].weights
"""float32's weight tolerance (for runs recorded in float32 only)."""


def recorded(saved: dict[str, Any], dtype: str) -> dict[str, Any]:
    """One dtype's part of a script's output: ``batches``, ``runs`` (by variant),
    ``noise_seeds``, ``library``, ``dtype``."""
    return {
        **saved[dtype],
        "noise_seeds": saved["noise_seeds"],
        "library": saved["library"],
        "dtype": dtype,
    }


@contextmanager
def default_dtype(name: str) -> Iterator[None]:
    """torch's default dtype ``name`` (``"float32"``, ``"float64"``) inside the block: offrl's
    networks, optimiser states and draws then take it, as d3rlpy's did in the recorded run."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, name))
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def batch(b: dict[str, torch.Tensor]) -> Batch:
    """One recorded batch as offrl's :class:`Batch`."""
    return Batch(
        b["obs"],
        b["actions"],
        b["rewards"],
        b["next_obs"],
        b["dones"],
        returns_to_go=b.get("returns_to_go"),
    )


def set_scalar(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy d3rlpy's ``[1, 1]`` parameter (a log-temperature, a log-alpha) into offrl's scalar."""
    with torch.no_grad():
        param.copy_(value.reshape(param.shape))


def scalar_diff(param: torch.Tensor, value: torch.Tensor) -> float:
    """``|offrl's scalar - d3rlpy's [1, 1] parameter|``."""
    return abs(float(param.detach()) - float(value))


def assert_metrics(
    ours: list[dict[str, float]],
    theirs: list[dict[str, float]],
    names: dict[str, str],
    dtype: str = "float32",
) -> None:
    """Each update's metrics equal, ``names`` mapping offrl's names to d3rlpy's."""
    tol = TOLERANCE[dtype]
    assert len(ours) == len(theirs)
    for k, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        for offrl_name, d3rlpy_name in names.items():
            expected = pytest.approx(other[d3rlpy_name], rel=tol.rel, abs=tol.abs)
            assert mine[offrl_name] == expected, f"update {k}: {offrl_name} vs {d3rlpy_name}"


class SeededNoise:
    """offrl's generator, seeded before each update as d3rlpy seeds torch's global one."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def start(self, seed: int) -> None:
        """Before an update: seed the generator."""
        self.generator.manual_seed(seed)

    def mark(self) -> Any:
        """Where the draws stand now."""
        return self.generator.get_state()

    def rewind(self, mark: Any) -> None:
        """Draw again from ``mark`` (the same numbers as after it)."""
        self.generator.set_state(mark)


_REAL_DRAWS = {"rand": torch.rand, "randn": torch.randn}


class ScriptedDraws:
    """Serve recorded draws to the ``torch.rand`` / ``torch.randn`` calls made with one
    generator; calls with any other generator (or none) run as usual.

    Each call must ask for the next recorded draw's kind and shape (else the test fails with
    both named); :meth:`done` checks that an update used all of its draws.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, generator: torch.Generator) -> None:
        self.generator = generator
        self.draws: list[tuple[str, torch.Tensor]] = []
        self.position = 0
        for name, real in _REAL_DRAWS.items():
            monkeypatch.setattr(torch, name, self._scripted(name, real))

    def _scripted(
        self, name: str, real: Callable[..., torch.Tensor]
    ) -> Callable[..., torch.Tensor]:
        def draw(*size: Any, generator: torch.Generator | None = None, **kw: Any) -> torch.Tensor:
            if generator is not self.generator:
                return real(*size, generator=generator, **kw)
            shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
            kind, value = self.draws[self.position]
            assert (name, tuple(shape)) == (kind, tuple(value.shape)), (
                f"offrl draws torch.{name}{tuple(shape)} where the next recorded draw is "
                f"torch.{kind}{tuple(value.shape)}"
            )
            self.position += 1
            return value.to(kw.get("device") or value.device, kw.get("dtype") or value.dtype)

        return draw

    def start(self, draws: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Before an update: the draws it takes, in offrl's order."""
        self.draws, self.position = list(draws), 0

    def done(self) -> None:
        """After an update: every draw was taken."""
        assert self.position == len(self.draws), f"{len(self.draws) - self.position} unused"

    def mark(self) -> int:
        """Where the draws stand now."""
        return self.position

    def rewind(self, mark: int) -> None:
        """Draw again from ``mark``."""
        self.position = mark


class D3rlpyOrder(SAC):
    """offrl's SAC (or, as a mix-in before :class:`~offrl.algos.cql.CQL`, CQL) with its own
    losses composed as d3rlpy's ``SACImpl.inner_update`` composes them: the choices where offrl
    and d3rlpy differ, switched to d3rlpy's.

    * Order: critic (and CQL's Lagrange alpha'), then temperature, then actor, then targets;
      offrl steps the actor and temperature first and the critic on the new actor.
    * Temperature: d3rlpy steps it on ``log pi`` of the actor's sample *before* the actor's
      loss, which then uses the new temperature; and its loss is the paper's eq. 18,
      ``-alpha (log pi + target_entropy)`` in ``alpha = exp(log_alpha)``; offrl's is
      softlearning's ``-log_alpha (log pi + target_entropy)`` (the gradient in ``log_alpha``
      differs by the factor alpha).
    * CQL Lagrange: d3rlpy steps alpha' on the critics' gap before the critic loss, which then
      uses the new alpha'; offrl (as the official code) uses alpha' first and steps it after.

    ``noise`` (a :class:`SeededNoise` or :class:`ScriptedDraws`) lets a loss draw the same
    sample twice: the actor's sample for the temperature, then again for the actor.
    """

    noise: SeededNoise | ScriptedDraws

    def alpha_loss(self, log_prob: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = -(self.log_alpha().exp() * (log_prob + self.target_entropy)).mean()
        return loss, {"alpha_loss": loss.detach()}

    def critic_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if getattr(self.config, "lagrange", False):
            mark = self.noise.mark()
            _, info = self.critic_loss(batch)
            part: Any = self.conservative  # type: ignore[attr-defined]  (CQL's, Cal-QL's)
            prime_loss, _ = part.alpha_prime_loss(info["_gap"])
            self.optimize(part.alpha_prime_optim, prime_loss)
            self.noise.rewind(mark)
        loss, info = self.critic_loss(batch)
        self.optimize(self.critic_optim, loss)
        return info

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        info: dict[str, torch.Tensor | float] = dict(self.critic_step(batch))
        mark = self.noise.mark()
        _, actor_info = self.actor_loss(batch)
        alpha_loss, alpha_info = self.alpha_loss(actor_info["_log_prob"])
        self.optimize(self.alpha_optim, alpha_loss)
        self.noise.rewind(mark)  # the same sample again, now with the new temperature
        actor_loss, actor_info = self.actor_loss(batch)
        self.optimize(self.actor_optim, actor_loss)
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {**info, **actor_info, **alpha_info}
