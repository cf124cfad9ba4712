"""TQC -- Kuznetsov, Shvechikov, Grishin & Vetrov, "Controlling Overestimation Bias with Truncated
Mixture of Continuous Distributional Quantile Critics", ICML 2020.

SAC with distributional critics. Each of ``N`` critics predicts ``M`` quantiles ``theta_n^m(s, a)``
of the return, at the levels ``tau_m = (2m + 1) / 2M``. The target pools the ``N M`` atoms of the
target critics at ``(s', a' ~ pi(s'))``, sorts them and drops the ``d N`` largest (``d`` per
critic): what is left, ``z_(1) <= ... <= z_(kN)`` with ``k = M - d``, is a truncated mixture whose
mean sits below the plain mixture's. How many atoms are dropped sets the overestimation bias,
finer than SAC's minimum over two critics:

    targets: y_i = r + gamma (1 - done) [ z_(i)(s', a') - alpha log pi(a'|s') ],  i = 1..kN
    critic n: min  1/(kN M) sum_m sum_i rho^H_{tau_m}(y_i - theta_n^m(s, a))   (Huber, kappa = 1)
    actor:    min_pi E_s[ alpha log pi(a|s) - 1/(NM) sum_n sum_m theta_n^m(s, a) ],  a ~ pi(s)
    alpha:    SAC's automatic tuning towards -act_dim

Defaults are the paper's, as its official code sets them (github.com/SamsungLabs/tqc_pytorch: 5
critics of three hidden layers of 512, 25 atoms each, the actor two layers of 256, lr 3e-4 for
all three, batch 256, tau 0.005, gamma 0.99). Its ``d`` is per task (the code's README): Hopper
5, HalfCheetah 0, Walker2d, Ant and Humanoid 2 (the default here). Stable-Baselines3
contrib's TQC (2 critics of (256, 256), 25 atoms, d = 2) is the same update at 1.2x SAC's time
(`offrl bench speed`, one thread: 80-87 updates/s against SAC's 104-106; the paper's size: 9.2),
and rl-baselines3-zoo's 1M-step runs of it score 12,090 on HalfCheetah-v3 and 4,381 on
Walker2d-v3 (SAC there: 9,535 and 3,863): ``--set num_critics=2 critic_hidden=[256,256]``, what
offrl's behaviour runs use (``benchmarks/behaviour/train.sh``).

Recipe choices. The losses are averaged over critics, atoms and targets, as the official code
and SB3-contrib do; the paper sums the critics' losses, a
constant factor Adam does not see. One update keeps SAC's order (actor, temperature, critic,
targets; :mod:`offrl.algos.sac`); the official code steps the critic first, SB3-contrib the
temperature, then the critic, then the actor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offrl.algos.base import register
from offrl.algos.sac import SAC, SACConfig
from offrl.data.sampler import Batch
from offrl.losses import quantile_huber_loss, td_target
from offrl.nn import EnsembleCritic

Info = dict[str, torch.Tensor]


@dataclass
class TQCConfig(SACConfig):
    """TQC hyperparameters (Kuznetsov et al., 2020, as the official code sets them; the rest as
    SAC's)."""

    num_critics: int = 5
    """Distributional critics ``N`` (paper: 5; SB3-contrib: 2)."""
    num_quantiles: int = 25
    """Atoms ``M`` each critic predicts (paper: 25)."""
    drop_per_critic: int = 2
    """Largest atoms dropped from the pooled target per critic, ``d`` (``d N`` in all; paper:
    Hopper 5, HalfCheetah 0, Walker2d / Ant / Humanoid 2)."""
    critic_hidden: tuple[int, ...] = (512, 512, 512)
    """Hidden widths of each critic (paper: three layers of 512; ``hidden`` is the actor's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.drop_per_critic < self.num_quantiles:
            raise ValueError(
                f"drop_per_critic: must be in [0, num_quantiles = {self.num_quantiles}), "
                f"got {self.drop_per_critic}"
            )


@register("tqc")
class TQC(SAC):
    """Truncated Quantile Critics (Kuznetsov et al., 2020): SAC with truncated distributional
    critics."""

    config_class = TQCConfig
    config: TQCConfig

    def make_critic(self) -> EnsembleCritic:
        """``N`` critics of ``M`` quantiles each: ``[N, B, M]``."""
        cfg, spec = self.config, self.spec
        return EnsembleCritic(
            spec.obs_dim,
            spec.action_dim,
            cfg.critic_hidden,
            cfg.num_critics,
            outputs=cfg.num_quantiles,
            **cfg.critic_net(),
        )

    @torch.no_grad()
    def soft_target(self, batch: Batch) -> torch.Tensor:
        """The ``kN`` smallest pooled target atoms, backed up: ``[B, kN]``, sorted."""
        cfg = self.config
        next_a, next_logp = self.actor.sample(batch.next_obs, generator=self.generator)
        z = self.critic_target(batch.next_obs, next_a)  # [N, B, M]
        pooled = z.transpose(0, 1).flatten(1).sort(-1).values  # [B, N M]
        atoms = pooled[:, : pooled.shape[1] - cfg.drop_per_critic * cfg.num_critics]
        if cfg.backup_entropy:
            atoms = atoms - self.alpha() * next_logp[:, None]
        return td_target(batch.rewards[:, None], batch.dones[:, None], atoms, cfg.gamma)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Quantile Huber loss of every critic's atoms against the shared truncated targets."""
        z = self.critic(batch.obs, batch.actions)  # [N, B, M]
        n, b, m = z.shape
        target = self.soft_target(batch).repeat(n, 1)  # [N B, kN], rows in z's (n, b) order
        # quantile_huber_loss sums over the M atoms (QR-DQN's eq. 10); / M makes it a mean.
        loss = quantile_huber_loss(z.reshape(n * b, m), target) / m
        return loss, {"critic_loss": loss.detach(), "q_mean": z.detach().mean()}

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The mean over all critics' atoms, ``[B]``; only dQ/da reaches the actor."""
        return self.critic(obs, actions, detach_params=True).mean((0, 2))
