"""CQL -- Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline Reinforcement
Learning", 2020.

Soft actor-critic whose critic is additionally pushed *down* on actions the policy might pick and
*up* on the dataset's actions, so that the learned Q lower-bounds the policy's value. CQL(H)
(eq. 4) adds to each critic's TD loss

    alpha * E_s[ log sum_a exp Q_i(s, a)  -  E_{a ~ D}[Q_i(s, a)] ]

with the log-sum-exp over a continuous action space estimated by importance sampling
(appendix F): ``num_samples`` actions from each of Unif([-1, 1]^d), pi(.|s) and pi(.|s'), all
scored at s, each divided by its proposal density:

    log sum_a exp Q(s, a)  ~=  logsumexp_j [ Q(s, a_j) - log mu_j(a_j | s) ]

The rest is :class:`~offrl.algos.sac.SAC` (actor, automatic entropy temperature alpha_H, target
critics), which this class extends by overriding :meth:`SAC.critic_loss` -- the same move a
researcher makes to add a new regulariser to any algorithm.

The Lagrange variant (eq. 30) replaces the fixed alpha by ``alpha * alpha'`` where ``alpha' >= 0``
is trained by dual gradient ascent to keep the penalty at the threshold ``target_action_gap``:
``max_{alpha'} alpha' * alpha * (penalty - target_action_gap)``, ``alpha'`` clamped to
``[0, 1e6]`` as in the official code.

Defaults follow CORL's MuJoCo settings (Tarasov et al., 2022, ``algorithms/offline/cql.py``),
which reproduce the official code (github.com/aviralkumar2907/CQL): alpha 10, 10 samples,
importance sampling, no Lagrange, no max-backup, no entropy in the backup (the official code's
``deterministic_backup=True``), policy lr 3e-5 (the paper's appendix F; the official README
suggests 1e-4), critic lr 3e-4, tau 0.005. Where the paper and the code disagree we follow the
code: the log-sum-exp is *not* divided by the number of samples (the ``- log(3 num_samples)``
normaliser of a Monte-Carlo average is dropped; it is a constant that only shifts the Lagrange
threshold), and actions from pi(.|s') are scored at s. CORL's three-hidden-layer critics,
orthogonal initialisation and BC warm start (off by default in CORL) are not reproduced.
d3rlpy's CQL differs in its recipe, not its loss; ``lagrange=True, actor_lr=1e-4, alpha_lr=1e-4,
mean_backup=True, alpha_prime_init=e`` runs it (``mean_backup`` bootstraps from the policy's mean
action; its ``conservative_weight`` is ``cql_alpha``, its ``alpha_learning_rate`` is offrl's
``critic_lr``, and ``alpha_learning_rate=0`` is ``lagrange=False``). Its update composes the same
losses differently, in SAC's two ways (:mod:`offrl.algos.sac`: order, temperature loss) and one of
its own: it steps alpha' on the critics' gap *before* the critic loss, which then weighs the
penalty by the new alpha'; offrl, as the official code, weighs it by alpha' and steps alpha' after.
Its ``max_q_backup`` and ``soft_q_backup`` draw fresh pi(s') samples for the target where offrl
reuses the penalty's. ``tests/test_d3rlpy_same_cql.py`` replays its updates (fixed alpha and
Lagrange) from offrl's losses with those choices switched, to float64 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from offrl.algos.base import Component, make_optimizer, register
from offrl.algos.sac import SAC, SACConfig, Scalar
from offrl.data.sampler import Batch
from offrl.losses import conservative_penalty, td_target

Info = dict[str, torch.Tensor]


@dataclass
class CQLConfig(SACConfig):
    """CQL hyperparameters (CORL's MuJoCo defaults, CQL(H) with fixed alpha)."""

    cql_alpha: float = 10.0
    """Weight alpha of the conservative penalty (CORL 10.0; the paper uses 5.0 for Gym).
    0 gives plain SAC on the offline data."""
    num_samples: int = 10
    """Actions drawn from each proposal (uniform, pi(s), pi(s')) for the log-sum-exp."""
    cql_temp: float = 1.0
    """Temperature of the log-sum-exp (1 = the paper's CQL(H))."""
    lagrange: bool = False
    """Tune alpha' (multiplying ``cql_alpha``) by dual gradient ascent (the paper's eq. 30)."""
    target_action_gap: float = 10.0
    """Lagrange threshold tau on the penalty (the official code's ``lagrange_thresh`` default)."""
    alpha_prime_init: float = 1.0
    """alpha' before any update (Lagrange variant; CORL 1, d3rlpy's reproduction e)."""
    max_backup: bool = False
    """Target max_j min_i Q'_i(s', a'_j) over ``num_samples`` policy actions (official code)."""
    backup_entropy: bool = False
    """Subtract alpha_H log pi(a'|s') in the target (False as in CORL and the official code)."""
    mean_backup: bool = False
    """Target at the policy's mean action a' = tanh(mu(s')) instead of one sample a' ~ pi(s')
    (d3rlpy's CQL does this); excludes ``max_backup`` and ``backup_entropy``."""
    actor_lr: float = 3e-5
    """Policy learning rate (paper appendix F and CORL; SAC's 3e-4 is too fast offline)."""
    critic_lr: float = 3e-4
    """Q-function learning rate (also alpha' in the Lagrange variant, as in the official code)."""
    alpha_lr: float = 3e-5
    """Entropy-temperature learning rate (CORL and the official code reuse the policy lr)."""
    reward_mode: str = "none"
    """The trainer's reward transform (CORL uses raw rewards for MuJoCo)."""


class Conservative(Component):
    """CQL's conservative critic loss and, in the Lagrange variant, its multiplier alpha': the
    part CQL and COMBO (:mod:`offrl.algos.combo`) share, each on its own SAC.

    ``alpha'`` (``log_alpha_prime``, ``alpha_prime_optim``) is saved in the owner's checkpoints
    under those names, as when CQL held it itself.
    """

    def __init__(self, config: CQLConfig, device: torch.device) -> None:
        if config.mean_backup and (config.max_backup or config.backup_entropy):
            # The mean action has no log-probability to subtract and is one action, not k.
            raise ValueError("mean_backup: excludes max_backup and backup_entropy")
        if config.alpha_prime_init <= 0.0:
            raise ValueError(f"alpha_prime_init: must be > 0, got {config.alpha_prime_init}")
        self.config = config
        self.device = device
        if config.lagrange:  # alpha' exists only in the Lagrange variant
            self.log_alpha_prime = Scalar(math.log(config.alpha_prime_init)).to(device)
            self.alpha_prime_optim = make_optimizer(
                self.log_alpha_prime.parameters(), config.critic_lr
            )

    def alpha_prime(self) -> torch.Tensor:
        """The Lagrange multiplier alpha' (1 when ``lagrange`` is off)."""
        if not self.config.lagrange:
            return torch.ones((), device=self.device)
        return self.log_alpha_prime().exp().clamp(0.0, 1e6)

    def critic_loss(
        self,
        algo: SAC,
        batch: Batch,
        push_up_rows: int | None = None,
        lower_bound: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Info]:
        """TD loss plus the importance-sampled CQL(H) penalty of ``algo``'s critics, all critics
        and samples at once. The penalty pushes Q down at every state of the batch and up on
        the batch's own actions -- on its first ``push_up_rows`` rows only, if given (COMBO:
        the dataset's rows, not the model's). ``lower_bound`` (``[B]``, Cal-QL) floors the
        values of the policy's actions, ``max(Q(s, a), lower_bound)``, before they are pushed
        down (the uniform actions' values are not floored)."""
        cfg, k, b = self.config, self.config.num_samples, batch.obs.shape[0]
        gen, device, act_dim = algo.generator, algo.device, algo.spec.action_dim
        obs_k = batch.obs.repeat(k, 1)  # [k*B, obs], sample-major rows
        with torch.no_grad():
            rand_a = torch.rand((k * b, act_dim), generator=gen, device=device)
            rand_a = 2.0 * rand_a - 1.0
            pi_a, pi_logp = algo.actor.sample(batch.obs, gen, n=k)
            next_a, next_logp = algo.actor.sample(batch.next_obs, gen, n=k)
            # Target: min over critics at a' ~ pi(s'), reusing the penalty's pi(s') draws: the
            # max over all k with max_backup, else the first one (a single sample, as in SAC;
            # only that one is scored); or at the mean action with mean_backup.
            if cfg.mean_backup:
                q_next = algo.critic_target(batch.next_obs, algo.actor(batch.next_obs)).amin(0)
            elif cfg.max_backup:
                q_next = algo.critic_target(batch.next_obs.repeat(k, 1), next_a).amin(0)
                q_next, idx = q_next.view(k, b).max(0)
                logp_next = next_logp.view(k, b).gather(0, idx.unsqueeze(0)).squeeze(0)
            else:
                q_next = algo.critic_target(batch.next_obs, next_a[:b]).amin(0)
                logp_next = next_logp[:b]
            if cfg.backup_entropy:  # (never with mean_backup: refused above)
                q_next = q_next - algo.alpha() * logp_next
            target = td_target(batch.rewards, batch.dones, q_next, cfg.gamma)
            log_density = torch.cat(
                [
                    torch.full((k, b), -act_dim * math.log(2.0), device=device),
                    pi_logp.view(k, b),
                    next_logp.view(k, b),
                ]
            )  # [3k, B]: log of each proposal's density at its sample
        # One critic call: the dataset actions, then uniform, pi(s) and pi(s') samples, all at s.
        q_all = algo.critic(
            torch.cat([batch.obs, obs_k, obs_k, obs_k]),
            torch.cat([batch.actions, rand_a, pi_a, next_a]),
        )  # [N, (1 + 3k) * B]
        q_data, q_sampled = q_all[:, :b], q_all[:, b:].view(-1, 3 * k, b)
        info: Info = {}
        if lower_bound is not None:
            q_uniform, q_policy = q_sampled[:, :k], q_sampled[:, k:]
            info["calibration_rate"] = (q_policy.detach() < lower_bound).float().mean()
            q_sampled = torch.cat([q_uniform, torch.maximum(q_policy, lower_bound)], dim=1)
        td = (q_data - target).pow(2).mean(1)  # [N]
        pushed_up = q_data if push_up_rows is None else q_data[:, :push_up_rows]
        gap = conservative_penalty(q_sampled, log_density, pushed_up, cfg.cql_temp)  # [N]
        if cfg.lagrange:
            penalty = self.alpha_prime().detach() * cfg.cql_alpha * (gap - cfg.target_action_gap)
        else:
            penalty = cfg.cql_alpha * gap
        loss = (td + penalty).sum()
        info |= {
            "critic_loss": loss.detach(),
            "td_loss": td.detach().mean(),
            "cql_gap": gap.detach().mean(),
            "q_mean": q_data.detach().mean(),
            "q_ood_mean": q_sampled.detach().mean(),
        }
        return loss, info | {"_gap": gap.detach()}

    def alpha_prime_loss(self, gap: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """Dual ascent on alpha': grows while the penalty exceeds ``target_action_gap``."""
        alpha_prime = self.alpha_prime()
        loss = -(alpha_prime * self.config.cql_alpha * (gap - self.config.target_action_gap)).mean()
        return loss, {"alpha_prime_loss": loss.detach(), "alpha_prime": alpha_prime.detach()}

    def lagrange_step(self, algo: SAC, info: dict[str, torch.Tensor | float]) -> None:
        """After the owner's update: one step on alpha' from the critic loss's gap (Lagrange
        variant only), its metrics added to ``info``."""
        if not self.config.lagrange:
            return
        gap = info["_gap"]
        assert isinstance(gap, torch.Tensor)
        prime_loss, prime_info = self.alpha_prime_loss(gap)
        algo.optimize(self.alpha_prime_optim, prime_loss)
        info.update(prime_info)


@register("cql")
class CQL(SAC):
    """Conservative Q-Learning (Kumar et al., 2020), SAC-based CQL(H)."""

    config_class = CQLConfig
    config: CQLConfig

    def build(self) -> None:
        self.conservative = Conservative(self.config, self.device)
        super().build()

    @property
    def log_alpha_prime(self) -> Scalar:
        """log alpha' (Lagrange variant), held by :attr:`conservative`."""
        return self.conservative.log_alpha_prime

    @property
    def alpha_prime_optim(self) -> torch.optim.Optimizer:
        """alpha''s optimiser (Lagrange variant), held by :attr:`conservative`."""
        return self.conservative.alpha_prime_optim

    def alpha_prime(self) -> torch.Tensor:
        """The Lagrange multiplier alpha' (1 when ``lagrange`` is off)."""
        return self.conservative.alpha_prime()

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """TD loss plus the conservative penalty (:meth:`Conservative.critic_loss`)."""
        return self.conservative.critic_loss(self, batch)

    def alpha_prime_loss(self, gap: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """Dual ascent on alpha' (:meth:`Conservative.alpha_prime_loss`)."""
        return self.conservative.alpha_prime_loss(gap)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        info = super().train_step(batch)
        self.conservative.lagrange_step(self, info)
        return info
