"""Fitted Q Evaluation: the value of a fixed policy, estimated from logged data alone.

FQE (Le, Voloshin & Yue, 2019, "Batch Policy Learning under Constraints", Sec. 4) fits
``Q^pi`` by regression on the policy's own Bellman targets, with no interaction::

    L(theta) = E_{(s,a,r,s') ~ D} (Q_theta(s, a) - r - gamma (1 - done) Q_theta'(s', pi(s')))^2

and estimates the policy's value as the mean of ``Q(s_0, pi(s_0))`` over the data's initial
states. The variant is the one Paine et al. (2020, "Hyperparameter Selection for Offline
Reinforcement Learning") found reliable for choosing among policies and that d3rlpy's
``d3rlpy.ope.FQE`` follows: a critic like the policy's own, a *hard* target copy every
``target_update_interval`` updates, Adam at a small learning rate. Defaults are d3rlpy 2.x's
``FQEConfig`` (learning rate 1e-4, batch 100, gamma 0.99, one critic, target every 100
updates, two hidden layers of 256).

Two details that decide what the estimate means:

* The policy is fixed, so its action at every next state is computed once, before training
  (``pi(s')`` for all rows): each update is then a plain regression step, whatever the policy
  costs to run (BCQ's 10 proposals per state are paid once, not per update).
* Timeouts bootstrap (only true terminals stop the sum), as in offrl's training: FQE estimates
  the infinite-horizon discounted value. :func:`discounted_return` measures the matching true
  value by rolling the policy out with the time limit lifted to the discount's effective
  horizon (``gamma^H < 1e-3``).

The estimate is only as good as the data's coverage of the policy's state-action pairs: a
policy that leaves the data's support is evaluated by extrapolation (Paine et al., Sec. 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm, make_optimizer
from offrl.config import check_options
from offrl.data.dataset import Dataset
from offrl.data.normalization import ObsNormalizer, preprocess
from offrl.data.sampler import Batch, TensorSampler
from offrl.envs import register_envs
from offrl.errors import ConfigError, IncompatibleDataError
from offrl.losses import ensemble_td_loss, td_target
from offrl.nn import EnsembleCritic, EnsembleMLP
from offrl.train.trainer import spec_for

__all__ = [
    "FQEConfig",
    "FQE",
    "PolicyEstimate",
    "OPEReport",
    "discounted_return",
    "effective_horizon",
    "evaluate_policies",
    "spearman",
]

Policy = Callable[[np.ndarray], np.ndarray]
"""A deterministic policy on raw observations: ``[B, *obs_shape] -> [B, act_dim]`` actions in
the environment's bounds (discrete: ``[B]`` indices). ``Algorithm.act`` is one."""


@dataclass
class FQEConfig:
    """Fitted Q Evaluation options (defaults: d3rlpy 2.x's ``FQEConfig``)."""

    steps: int = 50_000
    """Gradient updates (d3rlpy leaves it to the caller; 500 target copies at the default
    interval, enough for gamma = 0.99's effective horizon of ~100 steps)."""
    batch_size: int = 100
    """Transitions per update (d3rlpy)."""
    lr: float = 1e-4
    """Adam learning rate (d3rlpy)."""
    gamma: float = 0.99
    """Discount factor of the value being estimated."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the Q-network (d3rlpy's default encoder)."""
    num_critics: int = 1
    """Q-functions fitted together; the estimate is their mean (d3rlpy: 1)."""
    target_update_interval: int = 100
    """Updates between hard copies of the Q-network into its target (d3rlpy; as there, the
    first copy follows the first update)."""
    layer_norm: bool = False
    """LayerNorm in the Q-network's hidden layers."""
    norm_obs: bool = True
    """Standardise observations with the data's statistics before the Q-network."""

    def __post_init__(self) -> None:
        check_options(self)  # types and ranges, offrl.config.RANGES
        if self.gamma >= 1.0:
            raise ConfigError(
                f"option gamma: FQE estimates a discounted value and needs gamma < 1, got "
                f"{self.gamma} (FQEConfig.gamma)"
            )


@dataclass(frozen=True)
class PolicyEstimate:
    """One policy's FQE estimate beside its true discounted return (where measured)."""

    name: str
    """What was evaluated (a checkpoint path, a label)."""
    estimate: float
    """FQE's initial-state value: mean ``Q(s_0, pi(s_0))`` over the data's episode starts."""
    true_return: float | None = None
    """Mean discounted return of rollouts in the environment (:func:`discounted_return`)."""
    true_return_std: float | None = None
    """Standard deviation of those rollouts' discounted returns."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "name": self.name,
            "estimate": self.estimate,
            "true_return": self.true_return,
            "true_return_std": self.true_return_std,
        }


class FQE:
    """Fitted Q Evaluation of one deterministic policy on one dataset.

    Args:
        policy: an :class:`~offrl.algos.base.Algorithm` (its ``act``) or any callable on raw
            observation batches returning actions in the environment's bounds.
        dataset: the logged transitions (raw, as loaded).
        config: options; :class:`FQEConfig` defaults if omitted.
        env_id: Gymnasium id whose action space bounds the actions (default: the policy's
            spec for an ``Algorithm``, else the dataset's ``env_id``, else the data's range).
        seed: seeds the Q-network's initialisation and the batches.

    Example::

        policy = load_algorithm("runs/bc/checkpoints/latest.pt")
        fqe = FQE(policy, load_dataset("pendulum-medium-v0"))
        fqe.fit()
        print(fqe.estimate())
    """

    def __init__(
        self,
        policy: Algorithm | Policy,
        dataset: Dataset,
        config: FQEConfig | None = None,
        env_id: str | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.config = config if config is not None else FQEConfig()
        self.device = torch.device(device)
        self.steps_done = 0
        if isinstance(policy, Algorithm):
            spec = policy.spec
            act: Policy = policy.act
        else:
            spec = spec_for(dataset, env_id or dataset.env_id)
            act = policy
        if len(spec.obs_shape) != 1:
            raise IncompatibleDataError(
                f"observations: FQE handles vector observations, and these have shape "
                f"{tuple(spec.obs_shape)}"
            )
        if tuple(dataset.obs_shape) != tuple(spec.obs_shape) or dataset.discrete != spec.discrete:
            raise IncompatibleDataError(
                f"observations/actions: the policy was built for observations "
                f"{tuple(spec.obs_shape)} and {'discrete' if spec.discrete else 'continuous'} "
                f"actions; the dataset has {tuple(dataset.obs_shape)} and "
                f"{'discrete' if dataset.discrete else 'continuous'}"
            )
        self.spec = spec
        cfg = self.config
        normalizer = (
            ObsNormalizer.from_dataset(dataset)
            if cfg.norm_obs
            else ObsNormalizer.identity(spec.obs_shape)
        )
        data = preprocess(dataset, normalizer, None, spec.action_low, spec.action_high)
        self.sampler = TensorSampler(data, cfg.batch_size, seed=seed, device=device)
        # The policy is fixed: its action at every next state, and at every initial state, once.
        starts = dataset.episode_starts
        self.next_actions = self._policy_actions(act, dataset.next_observations)
        self.initial_obs = torch.as_tensor(data.observations[starts], device=self.device)
        self.initial_actions = self._policy_actions(act, dataset.observations[starts])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = self._make_q()
        self.q_target = self._make_q()
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.optim = make_optimizer(self.q.parameters(), lr=cfg.lr)

    # ------------------------------------------------------------------ pieces
    def _make_q(self) -> torch.nn.Module:
        cfg, spec = self.config, self.spec
        if spec.discrete:  # Q(s) -> one value per action, [N, B, n_actions]
            net: torch.nn.Module = EnsembleMLP(
                spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, cfg.layer_norm
            )
        else:
            net = EnsembleCritic(
                spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, cfg.layer_norm
            )
        return net.to(self.device)

    def _policy_actions(self, act: Policy, raw_obs: np.ndarray, chunk: int = 8192) -> torch.Tensor:
        """``pi(s)`` for raw observations, as the Q-network takes them: continuous actions mapped
        into ``[-1, 1]`` (as the dataset's are by ``preprocess``), discrete ones as indices."""
        parts = [np.asarray(act(raw_obs[i : i + chunk])) for i in range(0, len(raw_obs), chunk)]
        actions = np.concatenate(parts, axis=0)
        if self.spec.discrete:
            return torch.as_tensor(actions.reshape(-1), dtype=torch.int64, device=self.device)
        low, high = self.spec.bounds()
        scaled = 2.0 * (actions.reshape(len(raw_obs), -1) - low) / (high - low) - 1.0
        return torch.as_tensor(np.clip(scaled, -1.0, 1.0), dtype=torch.float32, device=self.device)

    def q_values(
        self, obs: torch.Tensor, actions: torch.Tensor, target: bool = False
    ) -> torch.Tensor:
        """``Q_i(s, a)`` of every critic, ``[N, B]``, for normalised observations and actions as
        the Q-network takes them (see :meth:`_policy_actions`)."""
        net = self.q_target if target else self.q
        if self.spec.discrete:
            out = net(obs)  # [N, B, n_actions]
            index = actions.view(1, -1, 1).expand(out.shape[0], -1, 1)
            return out.gather(2, index).squeeze(2)
        return net(obs, actions)

    # ------------------------------------------------------------------ training
    def update(self, batch: Batch | None = None) -> dict[str, float]:
        """One regression step on ``batch`` (default: one drawn from the dataset); returns the
        loss and the mean Q. A batch given here must name its dataset rows (``Batch.rows``),
        whose precomputed ``pi(s')`` it uses, in the units :meth:`q_values` takes."""
        batch = self.sampler.sample() if batch is None else batch
        if batch.rows is None:
            raise ValueError("FQE.update: the batch must name its dataset rows (Batch.rows)")
        with torch.no_grad():
            next_a = self.next_actions.index_select(0, batch.rows)
            next_q = self.q_values(batch.next_obs, next_a, target=True).mean(0)
            target = td_target(batch.rewards, batch.dones, next_q, self.config.gamma)
        q = self.q_values(batch.obs, batch.actions)
        loss = ensemble_td_loss(q, target)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        # The hard copy after updates 1, 1 + interval, 1 + 2 interval, ...: d3rlpy's schedule
        # (``grad_step % target_update_interval == 0`` counting from 0).
        if self.steps_done % self.config.target_update_interval == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        self.steps_done += 1
        return {"loss": float(loss.detach()) / q.shape[0], "q_mean": float(q.detach().mean())}

    def fit(
        self,
        steps: int | None = None,
        log_every: int = 0,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> list[tuple[int, float]]:
        """Run ``steps`` updates (default: ``config.steps``).

        Every ``log_every`` updates (0: only at the end) the current estimate is recorded and
        ``callback(step, metrics)`` called with the update's metrics and ``estimate``. Returns
        the recorded ``(step, estimate)`` pairs. Raises ``FloatingPointError`` if the loss turns
        non-finite (a learning rate too large for the rewards' scale is the usual cause).
        """
        steps = self.config.steps if steps is None else steps
        history: list[tuple[int, float]] = []
        for i in range(1, steps + 1):
            metrics = self.update()
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(
                    f"FQE diverged at update {self.steps_done}: loss {metrics['loss']} (lower "
                    f"lr, now {self.config.lr}, or scale the rewards)"
                )
            if (log_every and i % log_every == 0) or i == steps:
                value = self.estimate()
                history.append((self.steps_done, value))
                if callback is not None:
                    callback(self.steps_done, {**metrics, "estimate": value})
        return history

    @torch.no_grad()
    def estimate(self) -> float:
        """The policy's estimated value: mean ``Q(s_0, pi(s_0))`` over the episode starts
        (critics averaged), in the data's reward units."""
        return float(self.q_values(self.initial_obs, self.initial_actions).mean())


@dataclass(frozen=True)
class OPEReport:
    """FQE over a set of policies: each estimate, beside its true return where measured."""

    policies: list[PolicyEstimate]
    """One entry per policy, in the order given."""
    gamma: float
    """The discount of the estimates and of the true returns."""
    steps: int
    """FQE updates per policy."""

    @property
    def rank_correlation(self) -> float | None:
        """Spearman's rho between the estimates and the true returns (``None`` without true
        returns or with fewer than two policies)."""
        pairs = [(p.estimate, p.true_return) for p in self.policies if p.true_return is not None]
        if len(pairs) < 2 or len(pairs) != len(self.policies):
            return None
        return spearman([e for e, _ in pairs], [t for _, t in pairs])

    def best(self) -> PolicyEstimate:
        """The policy FQE would deploy: the highest estimate."""
        return max(self.policies, key=lambda p: p.estimate)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what ``offrl ope fqe --out`` writes)."""
        return {
            "gamma": self.gamma,
            "steps": self.steps,
            "policies": [p.as_dict() for p in self.policies],
            "rank_correlation": self.rank_correlation,
            "best": self.best().name,
        }


def evaluate_policies(
    policies: Mapping[str, Algorithm | Policy],
    dataset: Dataset,
    config: FQEConfig | None = None,
    env_id: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    true_return: bool = True,
    progress: Callable[[str], None] | None = None,
) -> OPEReport:
    """Fit one :class:`FQE` per policy on ``dataset`` and report the estimates.

    With ``true_return`` and an environment (``env_id`` or the dataset's), each policy is also
    rolled out for ``episodes`` episodes (:func:`discounted_return`), so that the report holds
    the rank correlation between estimates and true returns: how well FQE would choose among
    these policies. ``progress`` receives one line per policy.
    """
    config = config if config is not None else FQEConfig()
    env = env_id or dataset.env_id
    results = []
    for name, policy in policies.items():
        fqe = FQE(policy, dataset, config, env_id=env, seed=seed)
        fqe.fit()
        estimate = fqe.estimate()
        mean = std = None
        if true_return and env is not None:
            mean, std = discounted_return(policy, env, config.gamma, episodes, seed)
        results.append(PolicyEstimate(name, estimate, mean, std))
        if progress is not None:
            truth = "" if mean is None else f", true discounted return {mean:.2f} +- {std:.2f}"
            progress(f"{name}: FQE estimate {estimate:.2f}{truth}")
    return OPEReport(results, config.gamma, config.steps)


# ---------------------------------------------------------------------- ground truth
def effective_horizon(gamma: float, tolerance: float = 1e-3) -> int:
    """Steps ``H`` after which ``gamma^H < tolerance``: rewards beyond it change a discounted
    return by less than ``tolerance`` times their scale / (1 - gamma)."""
    if gamma <= 0.0:
        return 1
    return int(math.ceil(math.log(tolerance) / math.log(gamma)))


def discounted_return(
    policy: Algorithm | Policy,
    env_id: str,
    gamma: float = 0.99,
    episodes: int = 10,
    seed: int = 0,
    horizon: int | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation of ``sum_t gamma^t r_t`` over ``episodes`` rollouts of the
    deterministic ``policy`` in ``env_id`` (environments seeded ``seed, seed + 1, ...``).

    ``horizon`` caps each rollout; the default is :func:`effective_horizon` of ``gamma`` with
    the environment's own time limit lifted to it, which is the value FQE estimates (it
    bootstraps through timeouts). Pass the environment's limit to measure the truncated return.
    """
    steps = effective_horizon(gamma) if horizon is None else int(horizon)
    register_envs()  # offrl's MinAtar / Atari ids
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, max_episode_steps=steps) for _ in range(episodes)]
    )
    act = policy.act if isinstance(policy, Algorithm) else policy
    obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
    returns = np.zeros(episodes)
    discount = np.ones(episodes)
    active = np.ones(episodes, dtype=bool)
    for _ in range(steps):
        obs, rew, term, trunc, _ = envs.step(np.asarray(act(obs)))
        returns += discount * rew * active
        discount *= gamma
        active &= ~(term | trunc)
        if not active.any():
            break
    envs.close()
    return float(returns.mean()), float(returns.std())


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (ties get their average rank); ``nan``
    when either has no spread. What OPE is judged by: does it order policies as their true
    returns do?"""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"spearman: needs two equal-length sequences of >= 2 values, got {a.shape}, {b.shape}"
        )
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0.0 or rb.std() == 0.0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):  # average rank over ties
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks
