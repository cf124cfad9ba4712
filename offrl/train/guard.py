"""The divergence guard: a run whose losses, Q-values or parameters stop being finite stops.

:class:`DivergenceGuard` sees every update's metrics (already host floats, so watching them
costs no device sync) and, before every checkpoint, the parameters. The first non-finite value
raises :class:`~offrl.errors.TrainingDiverged` with a diagnosis: the quantity, the step, its last
finite values and their trend, and the options that usually cause it with this run's values.
Finite but runaway Q-values (``|q| > q_warn_factor * max|r| / (1 - gamma)``, the largest value
any policy could have) are reported once as a warning with the same detail.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from offrl.algos.base import Algorithm
from offrl.errors import TrainingDiverged

__all__ = ["DivergenceGuard"]

_HISTORY = 8


class DivergenceGuard:
    """Watches one algorithm's training for non-finite and runaway values.

    Args:
        algo: the algorithm being trained.
        reward_bound: ``max |r|`` of the rewards it trains on (after the reward transform), for
            the runaway-Q warning; ``None`` turns that warning off.
        q_warn_factor: warn when a Q-value metric exceeds this many times the largest possible
            value ``reward_bound / (1 - gamma)``.
        run_options: options of the training run worth naming in a diagnosis (e.g.
            ``reward_scale``, ``norm_obs``).
    """

    def __init__(
        self,
        algo: Algorithm,
        reward_bound: float | None = None,
        q_warn_factor: float = 10.0,
        run_options: dict[str, Any] | None = None,
    ) -> None:
        self.algo = algo
        self.history: dict[str, deque[tuple[int, float]]] = {}
        self.q_limit = (
            q_warn_factor * reward_bound / max(1.0 - algo.config.gamma, 1e-6)
            if reward_bound is not None and reward_bound > 0
            else None
        )
        self.reward_bound = reward_bound
        self.run_options = dict(run_options or {})
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ checks
    def check_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Record one update's metrics; raise on the first non-finite one."""
        for key, value in metrics.items():
            if not math.isfinite(value):
                self._diverged(key, step, value)
            self.history.setdefault(key, deque(maxlen=_HISTORY)).append((step, value))
            if self.q_limit is not None and _is_q(key) and abs(value) > self.q_limit:
                self._warn_runaway(key, step, value)

    def check_parameters(self, step: int) -> None:
        """Raise if any network parameter is non-finite (called before each checkpoint, so a
        checkpoint never holds a diverged network)."""
        bad = self._nonfinite_networks()
        if bad:
            self._diverged(f"parameters of {bad[0]}", step, float("nan"))

    def update(
        self, step: int, batch: Any, update: Callable[[Any], dict[str, float]]
    ) -> dict[str, float]:
        """``update(batch)``, checked: its metrics go through :meth:`check_metrics`; an error
        raised by the update on non-finite parameters (a distribution with a NaN mean, say)
        becomes a divergence, any other error passes through."""
        try:
            metrics = update(batch)
        except (ValueError, RuntimeError) as exc:
            bad = self._nonfinite_networks()
            if not bad:
                raise
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc)
            self._diverged(f"parameters of {bad[0]}", step, float("nan"), cause=str(first))
        self.check_metrics(step, metrics)
        return metrics

    # ------------------------------------------------------------------ reports
    def diagnosis(self, quantity: str, step: int, value: float) -> dict[str, Any]:
        """What a user needs to fix the run: the quantity, step, recent values, trend and the
        options that usually cause it."""
        recent = list(self.history.get(quantity, ()))
        return {
            "quantity": quantity,
            "step": step,
            "value": _show(value),
            "last_finite": [{"step": s, "value": v} for s, v in recent],
            "trend": _trend(recent),
            "likely_causes": self._causes(quantity),
        }

    def _causes(self, quantity: str) -> list[str]:
        cfg = self.algo.config
        lrs = {k: v for k, v in cfg.to_dict().items() if k.endswith("lr") and v is not None}
        causes = [
            "learning rates too high: " + ", ".join(f"{k}={v:g}" for k, v in sorted(lrs.items()))
        ]
        if self.reward_bound is not None and (_is_q(quantity) or "critic" in quantity):
            scale = self.run_options.get("reward_scale", 1.0)
            causes.append(
                f"large rewards with a long horizon: max |r| = {self.reward_bound:.3g} after "
                f"the reward transform (reward_scale={scale:g}), gamma={cfg.gamma:g} "
                "(try --reward-mode return_range or a smaller --reward-scale)"
            )
        if self.run_options.get("norm_obs") is False:
            causes.append("observations not normalised (norm_obs off)")
        return causes

    def _diverged(self, quantity: str, step: int, value: float, cause: str | None = None) -> None:
        diag = self.diagnosis(quantity, step, value)
        if cause:
            diag["error"] = cause
        raise TrainingDiverged(_message("diverged", diag), diag)

    def _warn_runaway(self, key: str, step: int, value: float) -> None:
        if any(w.startswith(f"{key} ") for w in self.warnings):
            return  # once per quantity
        diag = self.diagnosis(key, step, value)
        limit = f"{self.q_limit:.3g}"
        text = f"{key} is running away: {_message('exploding', diag)} (limit {limit})"
        self.warnings.append(text)
        warnings.warn(text, RuntimeWarning, stacklevel=3)

    def _nonfinite_networks(self) -> list[str]:
        """The names of the networks with a non-finite parameter."""
        return [
            name
            for name, net in self.algo.modules_by_name().items()
            if any(not bool(torch.isfinite(p).all()) for p in net.parameters())
        ]


def _is_q(key: str) -> bool:
    return key == "q_mean" or key.startswith("q_") or key.endswith("/q_mean")


def _show(value: float) -> str | float:
    return value if math.isfinite(value) else str(value)


def _trend(recent: list[tuple[int, float]]) -> str:
    """A few words on how the recent values moved."""
    if len(recent) < 2:
        return "no earlier values"
    first, last = recent[0][1], recent[-1][1]
    span = f"steps {recent[0][0]}-{recent[-1][0]}"
    if abs(first) > 0 and abs(last) > 10 * abs(first):
        return f"|value| grew {abs(last) / abs(first):.3g}x over {span}"
    if abs(last) > abs(first):
        return f"rising in magnitude over {span}"
    return f"no runaway before the jump ({span})"


def _message(what: str, diag: dict[str, Any]) -> str:
    """``diverged``: "critic_loss became nan at step 12 (...)"; ``exploding``: "3.2e+07 at ..."."""
    last = diag["last_finite"]
    tail = ", ".join(f"{r['value']:.4g}" for r in last[-4:]) if last else "none"
    if what == "diverged":
        head = f"{diag['quantity']} became {diag['value']}"
    else:
        head = f"{diag['value']:.4g}"
    return (
        f"{head} at step {diag['step']} (last finite values: {tail}; {diag['trend']}). "
        f"Usual causes: {'; '.join(diag['likely_causes'])}."
    )
