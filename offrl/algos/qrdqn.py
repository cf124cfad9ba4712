"""QR-DQN -- Dabney, Rowland, Bellemare & Munos, "Distributional Reinforcement Learning with
Quantile Regression", AAAI 2018.

Each action's return distribution is ``N`` quantiles at the midpoints ``tau_hat_i = (2i+1)/2N``;
the Q-value is their mean. The target distribution is the target network's at the next state's
greedy action, shifted by the reward (eq. 13):

    T theta_j = r + gamma (1 - done) theta'_j(s', a*),   a* = argmax_a Q(s', a)
    loss      = sum_i mean_j rho^kappa_{tau_hat_i}(T theta_j - theta_i(s, a))      (eq. 10)

``a*`` comes from the online network (``double_q``, as Tianshou's ``QRDQN``) or from the target
network (the paper). QR-DQN is the second seed's expert: it trains online (:meth:`explore` is
epsilon-greedy, epsilon falling linearly with the updates), and its rollouts with
``epsilon = 0.2`` are the noisy behaviour data the discrete offline algorithms learn from
(``offrl dataset rollout``). Offline, on a fixed dataset, it is the unregularised baseline whose
Q-values overestimate (discrete CQL adds the penalty).

Defaults: ``N = 200``, ``kappa = 1`` (the paper), Adam lr 1e-4, target copied every 500
updates, batch 32 (Tianshou's ``atari_qrdqn.py``); epsilon 1 -> 0.01 (the paper) over 250k
updates (Dopamine's QR-DQN decay period).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from offrl.algos.base import Algorithm, make_optimizer, register
from offrl.algos.discrete import DiscreteConfig, copy_due, greedy, q_network, step_and_copy
from offrl.data.sampler import Batch
from offrl.losses import quantile_huber_loss, td_target

__all__ = ["QRDQN", "QRDQNConfig"]


@dataclass
class QRDQNConfig(DiscreteConfig):
    """QR-DQN (the paper's quantiles and Huber threshold; Tianshou's Atari training options)."""

    num_quantiles: int = 200
    """Quantiles per action ``N`` (the paper's 200)."""
    kappa: float = 1.0
    """Huber threshold of the quantile loss (the paper's 1)."""
    double_q: bool = True
    """Choose the next action with the online network and value it with the target (Tianshou);
    ``False``: the target network does both (the paper)."""
    eps_start: float = 1.0
    """Online exploration: epsilon before the first update."""
    eps_end: float = 0.01
    """Online exploration: epsilon after ``eps_decay_updates`` updates (the paper's 0.01)."""
    eps_decay_updates: int = 250_000
    """Updates over which epsilon falls linearly from ``eps_start`` to ``eps_end``."""


@register("qrdqn")
class QRDQN(Algorithm):
    """Quantile-regression DQN (Dabney et al., 2018), online or on a fixed dataset."""

    config_class = QRDQNConfig
    config: QRDQNConfig
    action_kinds = ("discrete",)
    observation_kinds = ("vector", "image")

    def build(self) -> None:
        cfg = self.config
        self.q, self.q_target = q_network(self.spec, cfg, self.device, cfg.num_quantiles)
        self.q_optim = make_optimizer(self.q.parameters(), cfg.lr)

    def td_loss(
        self, batch: Batch, quantiles: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The quantile regression loss of the dataset actions' quantiles (taken from
        ``quantiles``, ``[B, A, N]`` at ``batch.obs``) to the shifted target distribution."""
        rows = torch.arange(len(batch.actions), device=quantiles.device)
        taken = quantiles[rows, batch.actions]  # [B, N]
        with torch.no_grad():
            next_target = self.q_target.quantiles(batch.next_obs)  # [B, A, N]
            chooser = self.q(batch.next_obs) if self.config.double_q else next_target.mean(-1)
            next_dist = next_target[rows, greedy(chooser)]
            target = td_target(
                batch.rewards[:, None], batch.dones[:, None], next_dist, self.config.gamma
            )
        loss = quantile_huber_loss(taken, target, self.config.kappa)
        return loss, {"qr_loss": loss.detach(), "q_mean": taken.detach().mean()}

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the Q-network on ``batch`` (QR-DQN: :meth:`td_loss` alone; discrete CQL
        adds its penalty here)."""
        return self.td_loss(batch, self.q.quantiles(batch.obs))

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        copy_due(self, [(self.q_target, self.q)], "before_update")
        loss, info = self.critic_loss(batch)
        step_and_copy(self, [(self.q_optim, loss)], [(self.q_target, self.q)])
        return dict(info)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        return greedy(self.q(obs))

    def epsilon(self) -> float:
        """The exploration rate after :attr:`num_updates` updates (linear decay)."""
        cfg = self.config
        frac = min(1.0, self.num_updates / cfg.eps_decay_updates)
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Epsilon-greedy actions: each row acts at random with probability :meth:`epsilon`."""
        eps = self.epsilon()

        def draw(x: torch.Tensor) -> torch.Tensor:
            best = self.policy(x)
            n = best.shape[0]
            coin = torch.rand(n, generator=self.generator, device=x.device)
            rand = torch.randint(
                self.spec.action_dim, (n,), generator=self.generator, device=x.device
            )
            return torch.where(coin < eps, rand, best)

        return self.explore_with(draw, obs)
