"""UWAC -- Wu, Zhai, Srivastava, Susskind, Zhang, Salakhutdinov & Goh, "Uncertainty Weighted
Actor-Critic for Offline Reinforcement Learning", ICML 2021.

BEAR (:mod:`offrl.algos.bear`) with its critics' and actor's losses down-weighted where the critics
are uncertain: SAC with BEAR's support constraint (:class:`~offrl.algos.support.SupportConstraint`,
the part BEAR owns too) and weighted losses. The uncertainty is epistemic, estimated by Monte-Carlo
dropout (Gal & Ghahramani, 2016): the critics carry dropout on their hidden layers, and ``T``
stochastic passes give a mean and a variance of each Q-value. Out-of-distribution actions have high
variance, so their bootstrapped targets and their pull on the policy are shrunk:

    Q'_i(s', a'), Var_i(s', a')  = mean, variance over T dropout passes of target critic i
    y   = r + gamma (1 - done) [ max_j ( lambda min_i Q'_i(s', a_j) + (1 - lambda) max_i ... )
                                 - T_H log pi(a_j* | s') ],            a_j ~ pi(s')  (BEAR's)
    w(s', a') = clip( exp(-beta * max_j sum_i Var_i(s', a_j)), w_min, w_max )
    critic:  min_Q  sum_i E[ (w(s', a') (Q_i(s, a) - y))^2 ]            (one dropout pass)
    actor:   min_pi E[ T_H log pi(a|s) - w(s, a) min_i Q_i(s, a) ] + alpha (MMD - epsilon)

with ``w(s, a)`` from the variance of ``T`` passes at the policy's action (the paper's eqs. 6-8
write the weight as ``beta / Var``; ``weight="inverse"`` gives that, clipped, and the default
``"exp"`` is the official code's ``use_exp_weight=True``). The weight multiplies the TD residual
before squaring, as in the official code (github.com/apple/ml-uwac,
``rlkit/torch/sac/uwac_dropout.py``; the paper's eq. 6 weights the squared error); target
variance is summed over the critics and maxed over the target's action samples, as there.

The dropout critics are offrl's batched ensemble with a per-call dropout mask
(:meth:`~offrl.nn.EnsembleMLP.forward` ``dropout=p``) drawn from the algorithm's generator: the
``T`` passes are one call on ``T`` copies of the rows. Acting (BEAR's best of sampled actions by
Q_1) uses the critic without dropout (the standard weight-scaling approximation of the MC mean;
the official code averages dropout passes).

Defaults are the official ``examples/UWAC_hdf5_d4rl.py``'s for what UWAC adds: dropout 0.1 on
each hidden layer, T = 100 passes (``num_samples``), beta 0.5, weights clipped to [0, 1], the actor
weighted too (``var_Pi=True``). Everything BEAR has keeps offrl's BEAR defaults (d3rlpy's); the
official UWAC script differs there in using a Gaussian MMD kernel with threshold 0.07 and
spectral normalisation of the critics (not reproduced). T = 100 is the official code's, but the
target then evaluates ``T x num_target_samples x batch`` critic rows per update (256,000 at the
defaults, a GPU workload): on a CPU, T = 10 already made an update about 9 times as costly as
BEAR's (batch 128), and the tests use T = 5 with 5 target samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from offrl.algos.base import register
from offrl.algos.bear import BEARConfig
from offrl.algos.sac import SAC
from offrl.algos.support import SupportConstraint, sampled_backup
from offrl.data.sampler import Batch
from offrl.losses import td_target

Info = dict[str, torch.Tensor]


@dataclass
class UWACConfig(BEARConfig):
    """UWAC hyperparameters: BEAR's, plus the official ``UWAC_hdf5_d4rl.py`` defaults for the
    uncertainty weighting."""

    dropout: float = 0.1
    """Dropout probability on every hidden layer of the critics (official ``drop_rate``)."""
    num_dropout_samples: int = 100
    """Monte-Carlo dropout passes T for the mean and variance (official ``multiple``'s
    ``num_samples=100``; costly on a CPU, see the module docstring)."""
    beta: float = 0.5
    """Scale of the uncertainty in the weight (official ``--beta``)."""
    weight: str = "exp"
    """``"exp"``: ``exp(-beta Var)`` (official ``use_exp_weight=True``); ``"inverse"``:
    ``beta / Var`` (the paper's eqs. 6-8). Either is clipped to ``[weight_min, weight_max]``."""
    weight_min: float = 0.0
    """Lower clip of the weight (official ``clip_bottom``)."""
    weight_max: float = 1.0
    """Upper clip of the weight (official ``clip_top``)."""
    weight_actor: bool = True
    """Down-weight the actor's Q term too (official ``var_Pi``, on in its script)."""


@register("uwac")
class UWAC(SAC):
    """Uncertainty Weighted Actor-Critic (Wu et al., 2021): BEAR's support-constrained SAC with
    MC-dropout critics whose variance down-weights the critic and actor losses."""

    config_class = UWACConfig
    config: UWACConfig

    def build(self) -> None:
        super().build()
        self.support = SupportConstraint(self.spec, self.config, self.generator, self.device)

    def uncertainty_weight(self, variance: torch.Tensor) -> torch.Tensor:
        """``clip(exp(-beta Var))`` or ``clip(beta / Var)``: ``[B]``, no gradient."""
        cfg = self.config
        if cfg.weight == "exp":
            w = torch.exp(-cfg.beta * variance)
        elif cfg.weight == "inverse":
            w = cfg.beta / variance.clamp_min(1e-12)
        else:
            raise ValueError(f"unknown UWAC weight {cfg.weight!r}; use 'exp' or 'inverse'")
        return w.clamp(cfg.weight_min, cfg.weight_max).detach()

    def mc_dropout(
        self, critic: Callable[..., torch.Tensor], obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance over T dropout passes of each critic: ``([N, R], [N, R])``.

        The T passes are one batched call on T copies of the R rows, each row with its own mask.
        """
        t, r = self.config.num_dropout_samples, obs.shape[0]
        q = critic(
            obs.repeat(t, 1),
            actions.repeat(t, 1),
            dropout=self.config.dropout,
            generator=self.generator,
        ).view(-1, t, r)  # [N, T, R], sample-major rows
        return q.mean(1), q.var(1)  # unbiased variance, as torch.var in the official code

    @torch.no_grad()
    def weighted_target(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """BEAR's target on the dropout-mean target critics, and its weight: ``([B], [B])``."""
        cfg, n = self.config, self.config.num_target_samples
        next_a, next_logp = self.actor.sample(batch.next_obs, self.generator, n=n)
        q, var = self.mc_dropout(self.critic_target, batch.next_obs.repeat(n, 1), next_a)
        q_next, logp = sampled_backup(q, next_logp, n, cfg.lmbda)  # q, var: [N, n*B]
        if cfg.backup_entropy:
            q_next = q_next - self.alpha() * logp
        # Variance summed over critics, maxed over the n samples (official code).
        var_next = var.sum(0).view(n, -1).amax(0)
        target = td_target(batch.rewards, batch.dones, q_next, cfg.gamma)
        return target, self.uncertainty_weight(var_next)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """``sum_i mean_b (w (Q_i(s, a) - y))^2`` with one dropout pass for Q_i (official)."""
        target, w = self.weighted_target(batch)
        q = self.critic(
            batch.obs, batch.actions, dropout=self.config.dropout, generator=self.generator
        )  # [N, B]
        loss = ((q - target) * w).pow(2).mean(1).sum()
        info = {
            "critic_loss": loss.detach(),
            "q_mean": q.detach().mean(),
            "target_weight": w.mean(),
        }
        return loss, info

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``w(s, a) min_i mean_T Q_i(s, a)``: the dropout-mean value, down-weighted by its
        variance (summed over critics) when ``weight_actor``; differentiable in the actions."""
        q, var = self.mc_dropout(
            lambda o, a, **kw: self.critic(o, a, detach_params=True, **kw), obs, actions
        )
        q_min = q.amin(0)  # [B]
        if not self.config.weight_actor:
            return q_min
        return self.uncertainty_weight(var.detach().sum(0)) * q_min

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        return self.support.train_step(self, batch)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """BEAR's highest-Q_1 of ``num_action_samples`` policy samples, dropout off."""
        return self.support.act(self, obs)

    def frozen_policy(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`policy` with this state's policy-sample draws held as constants."""
        return self.support.frozen_act(self)
