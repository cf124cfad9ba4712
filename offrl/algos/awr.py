"""AWR -- Peng, Kumar, Zhang & Levine, "Advantage-Weighted Regression: Simple and Scalable
Off-Policy Reinforcement Learning", 2019.

Two supervised regressions, alternated (algorithm 1): fit a state-value function to the returns
of the data, then fit the policy to the data's actions by maximum likelihood, each action
weighted by its exponentiated advantage:

    value:  min_V   E_{s ~ D} [ (R^lambda(s) - V(s))^2 ]
    policy: max_pi  E_{s, a ~ D} [ min(exp(A(s, a) / beta), w_max) log pi(a | s) ],
            A(s, a) = R^lambda(s, a) - V(s)

The return ``R^lambda`` is the TD(lambda) return (section 5, lambda = 0.95) of the transition's
own episode, bootstrapped with the value function; lambda = 1 gives the Monte-Carlo return. A
truly terminal transition does not bootstrap; a truncated episode (a timeout) bootstraps from
``V(s')`` at the cut, as the official code does (``_compute_batch_vals`` zeroes the value only at
failures). See :meth:`offrl.data.Dataset.returns_to_go`.

offrl trains in steps, so the alternation becomes a schedule: every ``recompute_every`` updates
(the official code's 1000 policy steps per iteration) a frozen copy ``V_snap`` of the value
function is taken and, over the whole dataset, the returns ``R^lambda`` (bootstrapped with
``V_snap``) and the advantages ``R^lambda - V_snap(s)`` are recomputed; in between, every update
takes one value step towards those returns and one policy step with those advantages. (The
official code takes 200 value steps, recomputes the advantages with the new V, then takes 1000
policy steps; here the policy's advantages come from the V of the last recomputation.) The whole
dataset comes from :meth:`~offrl.algos.base.Algorithm.attach_data`; batches name their rows with
``Batch.rows``. Returns and advantages are *not* saved in checkpoints (they are dataset-sized):
they are a function of the data and of ``V_snap``, which is saved, so a resumed run recomputes
exactly the same values and continues bit for bit.

Defaults follow the paper's appendix and the official code (github.com/xbpeng/awr,
``awr_configs.py``): beta 1.0, w_max 20, lambda 0.95, gamma 0.99, batch 256, two hidden layers
of 128 and 64 units. As in the official code (``_calc_adv``; the paper does not say), the
advantages are normalised to zero mean and unit standard deviation over the dataset before
exponentiation. Deliberate deviations: (1) Adam with learning rate 3e-4 for both networks, as
in offrl's other algorithms, instead of SGD with momentum 0.9 at 5e-5 (policy) and 1e-2 (value)
-- those step sizes are tuned for the official code's normalised value targets and its long
runs (about 1000 policy steps per 2048 new samples for millions of samples), and SGD at 1e-2 on
raw returns of hundreds diverges; (2) the Gaussian policy has a ``tanh``-squashed mean and a
learned state-independent log-std, where the official code fixes the std (0.2 or 0.4 by
environment) and adds an action-bound penalty -- acting uses the mean either way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register
from offrl.data.dataset import Dataset
from offrl.data.sampler import Batch
from offrl.losses import advantage_weights
from offrl.nn import GaussianPolicy, ValueFunction


@dataclass
class AWRConfig(AlgoConfig):
    """AWR hyperparameters (the paper's appendix and the official ``awr_configs.py``)."""

    hidden: tuple[int, ...] = (128, 64)
    """Hidden layer widths of the policy and the value function (official ``actor_net_layers``
    and ``critic_net_layers``: [128, 64])."""
    beta: float = 1.0
    """Temperature: weights are ``exp(A / beta)`` (paper appendix and official ``temp``: 1.0)."""
    max_weight: float = 20.0
    """Clip ``w_max`` of the weights (paper appendix and official ``weight_clip``: 20)."""
    lam: float = 0.95
    """TD(lambda) parameter of the returns (paper and official ``td_lambda``: 0.95); 1.0 gives
    Monte-Carlo returns (bootstrapped only at truncations)."""
    normalize_advantages: bool = True
    """Standardise advantages over the dataset before ``exp`` (official ``_calc_adv``, with
    ``ADV_EPS = 1e-5``; not in the paper)."""
    recompute_every: int = 1000
    """Updates between recomputations of the returns and advantages with a fresh copy of V
    (one official iteration: ``actor_steps = 1000``)."""
    actor_lr: float = 3e-4
    """Policy learning rate, Adam (paper: SGD, momentum 0.9, 5e-5; see the module docstring)."""
    value_lr: float = 3e-4
    """Value learning rate, Adam (paper: SGD, momentum 0.9, 1e-2; see the module docstring)."""


@register("awr")
class AWR(Algorithm):
    """Advantage-Weighted Regression (Peng et al., 2019), offline."""

    config_class = AWRConfig
    config: AWRConfig

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        if cfg.recompute_every < 1:
            raise ValueError(f"recompute_every: must be >= 1, got {cfg.recompute_every}")
        self.actor = GaussianPolicy(
            spec.obs_dim, spec.action_dim, cfg.hidden, state_dependent_std=False, **cfg.actor_net()
        ).to(self.device)
        self.value = ValueFunction(spec.obs_dim, cfg.hidden, **cfg.critic_net()).to(self.device)
        # V at the last recomputation: saved, so that a resumed run recomputes the same returns.
        self.value_snapshot = copy.deepcopy(self.value).requires_grad_(False)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.value_optim = make_optimizer(self.value.parameters(), cfg.value_lr)
        # Not tensors themselves (so never in a checkpoint): the attached data and the
        # per-row returns and weights recomputed from it.
        self.data: Dataset | None = None
        self.targets: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ the whole dataset
    def attach_data(self, dataset: Dataset) -> None:
        """Keep the training data (its rows are ``Batch.rows``); returns come later."""
        self.data = dataset
        self.targets = {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.targets = {}  # recomputed from the loaded V snapshot at the next update

    @torch.no_grad()
    def recompute_targets(self) -> None:
        """Returns ``R^lambda`` and advantage weights of every row, from ``value_snapshot``."""
        if self.data is None:
            raise RuntimeError("AWR needs the whole dataset: call attach_data() (the trainer does)")
        cfg = self.config

        def values(obs: Any) -> torch.Tensor:  # V_snap in chunks: [N, *obs_shape] -> [N]
            x = torch.from_numpy(obs).to(self.device).reshape(len(obs), -1)
            return torch.cat([self.value_snapshot(c)[0] for c in x.split(65536)])

        v = values(self.data.observations)
        v_next = values(self.data.next_observations)
        returns = self.data.returns_to_go(cfg.gamma, cfg.lam, v_next.double().cpu().numpy())
        ret = torch.from_numpy(returns).to(device=self.device, dtype=torch.float32)
        adv = ret - v
        if cfg.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-5)
        self.targets = {
            "returns": ret,
            "weights": advantage_weights(adv, 1.0 / cfg.beta, cfg.max_weight),
        }

    # ------------------------------------------------------------------ losses
    def value_loss(
        self, batch: Batch, returns: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Regression of V(s) on the return ``R^lambda``."""
        v = self.value(batch.obs)[0]
        loss = (returns - v).pow(2).mean()
        return loss, {"value_loss": loss.detach(), "v_mean": v.detach().mean()}

    def actor_loss(
        self, batch: Batch, weights: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Advantage-weighted negative log-likelihood of the dataset actions."""
        log_prob = self.actor.distribution(batch.obs).log_prob(batch.actions).sum(-1)
        loss = -(weights * log_prob).mean()
        return loss, {"actor_loss": loss.detach(), "adv_weight_mean": weights.mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        if batch.rows is None:
            raise ValueError("AWR needs Batch.rows (the dataset rows): use a TensorSampler")
        if self.num_updates % self.config.recompute_every == 0:
            self.value_snapshot.load_state_dict(self.value.state_dict())
            self.recompute_targets()
        elif not self.targets:  # after attach_data or load_state_dict
            self.recompute_targets()
        returns = self.targets["returns"][batch.rows]
        weights = self.targets["weights"][batch.rows]
        info: dict[str, torch.Tensor | float] = {}
        value_loss, parts = self.value_loss(batch, returns)
        self.optimize(self.value_optim, value_loss)
        info.update(parts)
        actor_loss, parts = self.actor_loss(batch, weights)
        self.optimize(self.actor_optim, actor_loss)
        info.update(parts)
        return info

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)
