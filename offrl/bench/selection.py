"""Policy selection under a limited online budget: a UCB bandit over trained policies.

Offline RL trains many policies (seeds, hyperparameter settings) and then has to deploy one;
choosing it by each policy's score over many evaluation episodes assumes an online budget that a
real deployment rarely has. Unifloral (Jackson et al., 2025, "A Clean Slate for Offline
Reinforcement Learning", arXiv:2504.11453) reports instead what a practitioner with ``n``
online episodes would get: a UCB bandit whose arms are the ``K`` trained policies spends the
episodes one at a time, and after ``n`` of them picks the policy with the best empirical mean;
the reported quantity is the true expected score of that pick, averaged over many runs of the
bandit, for ``n = 1 .. N``, with a bootstrap confidence interval over the runs.

This module follows Unifloral's ``evaluation.py`` (github.com/EmptyJackson/unifloral, commit
f2dc127: ``run_bandit``, ``run_bandit_trials``, ``bootstrap_bandit_trials``):

* an arm is a policy; pulling it draws one of its recorded episode scores uniformly at random,
  with replacement (a new episode of that policy);
* the arm pulled is the argmax of ``mean + sqrt(alpha * ln(t) / count)``, ``t`` the number of
  pulls so far plus one (their ``total_pulls`` starts at 1), ``alpha = 2``, ties broken
  uniformly at random. An arm never pulled comes first: theirs gets the bonus
  ``sqrt(alpha * ln(t) / 1e-9)``, ours is infinite, the same order for any score below ~37,000
  (ours also for larger raw returns). The first pull, where all arms tie, is random;
* after each pull the bandit's pick is the arm with the best empirical mean, and the value
  recorded is that policy's mean over *all* its recorded episodes (its expected score);
* ``repeats`` independent runs (theirs: 1000; their notebook 500), each on a random subset of
  ``subsample`` policies drawn without replacement (theirs: 20 by default, 8 in their README and
  notebook; a subset larger than ``K`` uses all, as theirs does);
* the curve is the mean over runs at each ``n``, and its CI the percentile bootstrap of that
  mean over runs (theirs: 1000 resamples, 95 %).

Two deliberate differences, both about ties and arms with no pulls yet:

* the pick is made among the arms pulled so far. Theirs takes ``argmax`` of ``sums /
  max(counts, 1)``, which gives an unpulled arm the empirical mean 0: with negative scores (raw
  Pendulum returns, a policy worse than random on the D4RL scale) after one pull it "picks" a
  policy it has never seen;
* ties between empirical means are broken uniformly at random, not by the lowest index, so
  that the order in which policies are listed (seed 0 first) never matters.

Everything is drawn from one ``numpy`` generator seeded by ``SelectionConfig.seed``: the same
inputs and seed give the same numbers. The bandit is vectorised over runs (one array operation
per pull), so 1000 runs of 100 pulls take milliseconds.

The bonus is in the units of the scores (Unifloral's: D4RL normalised scores, 0-100). On raw
returns of a few thousand, ``alpha = 2`` makes the bandit nearly greedy after one pull per arm;
scale ``ucb_alpha`` with the square of the scores' unit to keep the exploration comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from offrl.config import check_options
from offrl.data.dataset import DatasetError
from offrl.errors import ConfigError

__all__ = ["SelectionConfig", "SelectionResult", "ucb_selection"]


@dataclass
class SelectionConfig:
    """Unifloral's policy-selection protocol (defaults: theirs, except ``subsample``)."""

    budget: int | None = None
    """Largest online budget ``N``: the curve covers ``n = 1 .. N`` episodes. Default: the most
    episodes any policy has recorded (a policy's episodes are drawn with replacement, so any
    budget works)."""
    repeats: int = 1000
    """Independent runs of the bandit averaged into the curve (Unifloral: 1000)."""
    ucb_alpha: float = 2.0
    """Exploration coefficient of the UCB bonus ``sqrt(alpha * ln(t) / count)``, in squared
    score units (Unifloral: 2 on D4RL normalised scores)."""
    subsample: int | None = None
    """Policies offered to each run, drawn without replacement from the ``K`` given (Unifloral:
    20 by default, 8 in their examples; larger than ``K`` means all). Default: all ``K``."""
    bootstraps: int = 1000
    """Bootstrap resamples of the runs behind each confidence interval (Unifloral: 1000)."""
    confidence: float = 0.95
    """Confidence level of the percentile-bootstrap interval."""
    seed: int = 0
    """Seed of every draw: policy subsets, tie-breaks, episode draws, bootstrap resamples."""
    shown: tuple[int, ...] = (1, 5, 10, 25, 50, 100)
    """Budgets that ``offrl bench report`` lists in its table (those up to ``budget``; the
    figure shows every budget)."""

    def __post_init__(self) -> None:
        check_options(self)  # types, with a message naming the option
        positive: dict[str, int | None] = {
            "repeats": self.repeats,
            "bootstraps": self.bootstraps,
            "budget": self.budget,
            "subsample": self.subsample,
        }
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ConfigError(
                    f"option {name}: {value!r} is outside [1, inf) (SelectionConfig.{name})"
                )
        if not self.ucb_alpha >= 0.0:
            raise ConfigError(
                f"option ucb_alpha: {self.ucb_alpha!r} is outside [0, inf) "
                "(SelectionConfig.ucb_alpha)"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(
                f"option confidence: {self.confidence!r} is outside (0, 1) "
                "(SelectionConfig.confidence)"
            )
        if any(n < 1 for n in self.shown):
            raise ConfigError(f"option shown: budgets must be >= 1, got {self.shown!r}")


@dataclass(frozen=True)
class SelectionResult:
    """The expected score of the policy a UCB bandit picks after ``n`` online episodes."""

    budgets: np.ndarray
    """``[N]``: ``1, 2, ..., N`` episodes."""
    mean: np.ndarray
    """``[N]``: the expected score of the bandit's pick after that many episodes (the mean over
    runs of the picked policy's mean score)."""
    ci_low: np.ndarray
    """``[N]``: lower end of the bootstrap confidence interval of ``mean``."""
    ci_high: np.ndarray
    """``[N]``: upper end."""
    picked: np.ndarray
    """``[repeats, N]``: in each run, the mean score of the policy picked after each pull."""
    policy_means: np.ndarray
    """``[K]``: each policy's mean score over its recorded episodes (``max`` is what unlimited
    evaluation would pick; ``mean``, what a random pick gets)."""

    def at(self, n: int) -> tuple[float, float, float]:
        """``(mean, ci_low, ci_high)`` after ``n`` episodes."""
        if not 1 <= n <= len(self.budgets):
            raise ValueError(f"budget {n} is outside 1..{len(self.budgets)}")
        return float(self.mean[n - 1]), float(self.ci_low[n - 1]), float(self.ci_high[n - 1])


def _random_argmax(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row of ``[R, K]`` ``values``, the index of a maximum, ties broken uniformly."""
    top = values == values.max(axis=1, keepdims=True)
    keys = np.where(top, rng.random(values.shape) + 1.0, 0.0)  # only maxima get keys >= 1
    return keys.argmax(axis=1)


def ucb_selection(
    scores: Sequence[ArrayLike], config: SelectionConfig | None = None
) -> SelectionResult:
    """Run Unifloral's UCB policy selection on ``scores[k]``, policy ``k``'s episode scores.

    Args:
        scores: one 1-D array per policy (lengths may differ): the scores of its evaluation
            episodes, e.g. ``final.json``'s ``final_eval.normalized``.
        config: the protocol (:class:`SelectionConfig`); default: Unifloral's.

    Returns:
        a :class:`SelectionResult` for budgets ``1 .. config.budget``.

    Raises:
        DatasetError: no policy, a policy without episodes, or a non-finite score (the message
            names ``scores[k]``).
    """
    cfg = config or SelectionConfig()
    if len(scores) == 0:
        raise DatasetError("scores: no policies to select from")
    pools = [np.asarray(s, dtype=float).ravel() for s in scores]
    for k, pool in enumerate(pools):
        if pool.size == 0:
            raise DatasetError(f"scores[{k}]: the policy has no episode scores")
        if not np.isfinite(pool).all():
            bad = int(np.flatnonzero(~np.isfinite(pool))[0])
            raise DatasetError(f"scores[{k}][{bad}]: non-finite episode score {pool[bad]}")
    sizes = np.array([p.size for p in pools])
    table = np.zeros((len(pools), sizes.max()))  # [K, most episodes], padded
    for k, pool in enumerate(pools):
        table[k, : pool.size] = pool
    policy_means = np.array([p.mean() for p in pools])
    budget = cfg.budget or int(sizes.max())
    num = len(pools)
    arms = min(cfg.subsample or num, num)
    rng = np.random.default_rng(cfg.seed)
    runs = cfg.repeats

    # Each run's policies: a random subset of `arms` of the `num` (all, in a random order).
    offered = np.argsort(rng.random((runs, num)), axis=1)[:, :arms]  # [R, A] policy indices
    counts = np.zeros((runs, arms), dtype=np.int64)
    sums = np.zeros((runs, arms))
    picked = np.empty((runs, budget))
    rows = np.arange(runs)
    for t in range(1, budget + 1):  # t: pulls so far + 1, Unifloral's total_pulls
        means = sums / np.maximum(counts, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(cfg.ucb_alpha * np.log(t) / counts)
        ucb = np.where(counts == 0, np.inf, means + bonus)
        arm = _random_argmax(ucb, rng)  # [R]
        policy = offered[rows, arm]
        episode = (rng.random(runs) * sizes[policy]).astype(np.int64)  # uniform, replacement
        counts[rows, arm] += 1
        sums[rows, arm] += table[policy, episode]
        # The pick: the best empirical mean among the arms pulled so far.
        empirical = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        best = _random_argmax(empirical, rng)
        picked[:, t - 1] = policy_means[offered[rows, best]]

    # Percentile bootstrap of the mean over runs, at every budget at once: each resample is a
    # multinomial count of how often each run is drawn, so its means are one matrix product.
    weights = rng.multinomial(runs, np.full(runs, 1.0 / runs), size=cfg.bootstraps)  # [B, R]
    boot = weights @ picked / runs  # [B, N]
    tail = 100.0 * (1.0 - cfg.confidence) / 2.0
    low, high = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    return SelectionResult(
        budgets=np.arange(1, budget + 1),
        mean=picked.mean(axis=0),
        ci_low=low,
        ci_high=high,
        picked=picked,
        policy_means=policy_means,
    )
