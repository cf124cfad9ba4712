"""The dynamics ensemble: N probabilistic networks predicting the next state and the reward.

As in MBPO / MOPO / OfflineRL-Kit (``offlinerlkit/modules/dynamics_module.py``,
``offlinerlkit/dynamics/ensemble_dynamics.py``): each member maps ``(s, a)`` -- standardised by
statistics of the training split -- to a Gaussian over ``(s' - s, r)``, with a soft-bounded,
learned log-variance (:class:`~offrl.nn.heads.ProbabilisticHead`). The members are one
:class:`~offrl.nn.mlp.EnsembleMLP` (one batched weight, never a loop over members); training
keeps the ``elites`` with the lowest held-out error, and a step of the model draws each
transition from one elite chosen uniformly at random, ``mean + std * eps``.

The members also output a logit of ``done``, trained by cross-entropy: a rollout uses it where
no termination rule of the environment is known (:mod:`offrl.dynamics.termination`).

The module works in the units it is trained in: the algorithms train it on their prepared data
(normalised observations, actions in ``[-1, 1]``, transformed rewards), so its predictions are
what they sample from the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from offrl.nn import EnsembleMLP
from offrl.nn.heads import ProbabilisticHead

__all__ = ["DynamicsEnsemble", "WEIGHT_DECAY"]

WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
"""L2 coefficients of the hidden layers and the output layer (MOPO's ``constructor.py``,
OfflineRL-Kit's ``--dynamics-weight-decay``); a deeper or shallower network repeats the last
hidden value for the hidden layers and keeps 1e-4 for the output."""


class DynamicsEnsemble(nn.Module):
    """``ensemble`` Gaussian models of ``(s' - s, r)`` given ``(s, a)``, with ``elites`` chosen.

    Args:
        obs_dim: observation features.
        act_dim: action features.
        hidden: hidden layer widths (Kit and MOPO: four of 200).
        ensemble: members (7).
        elites: members a rollout draws from (5), set by :meth:`set_elites` after training.
        activation: hidden activation (``silu``, i.e. Swish, as MBPO / MOPO / Kit).
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor
    elite_idx: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (200, 200, 200, 200),
        ensemble: int = 7,
        elites: int = 5,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        if not 1 <= elites <= ensemble:
            raise ValueError(f"elites: {elites} must be in [1, ensemble={ensemble}]")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.ensemble, self.num_elites = ensemble, elites
        self.head = ProbabilisticHead(obs_dim + 1, ensemble)
        out = self.head.in_dim() + 1  # the last output: the logit of done
        self.net = EnsembleMLP(obs_dim + act_dim, out, hidden, ensemble, activation=activation)
        self.register_buffer("input_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("elite_idx", torch.arange(elites))

    # ------------------------------------------------------------------ prediction
    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, members: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, log_var, done_logit)``: the Gaussian of ``(s' - s, r)``, ``[E, B, obs_dim +
        1]`` each, and the logit of the episode ending at ``s'``, ``[E, B]``. ``obs`` and
        ``actions`` are ``[B, .]`` (shared by the members) or ``[E, B, .]`` (one batch per
        member)."""
        x = (torch.cat([obs, actions], -1) - self.input_mean) / self.input_std
        out = self.net(x, members=members)
        mean, log_var = self.head(out[..., :-1])
        return mean, log_var, out[..., -1]

    def set_scaler(self, inputs: torch.Tensor) -> None:
        """Standardise inputs ``[N, obs + act]`` by their mean and std (std below 1e-12 -> 1,
        as Kit's ``StandardScaler``)."""
        std = inputs.std(0, unbiased=False)
        self.input_mean.copy_(inputs.mean(0))
        self.input_std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std))

    @torch.no_grad()
    def copy_members(self, other: DynamicsEnsemble, members: Sequence[int]) -> None:
        """Copy ``members``' weights and log-variance bounds from ``other`` (same shape)."""
        idx = list(members)
        pairs = [*zip(self.net.layers(), other.net.layers(), strict=True)]
        pairs += [*zip(self.net.norms(), other.net.norms(), strict=True)]
        pairs.append(((self.head.max_logvar, self.head.min_logvar),
                      (other.head.max_logvar, other.head.min_logvar)))  # fmt: skip
        for mine, theirs in pairs:
            for a, b in zip(mine, theirs, strict=True):
                a[idx] = b[idx]

    def set_elites(self, idx: Sequence[int]) -> None:
        """The members a rollout draws from."""
        self.elite_idx.copy_(torch.as_tensor(list(idx), dtype=torch.int64))

    # ------------------------------------------------------------------ training
    def loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        targets: torch.Tensor,
        dones: torch.Tensor,
        logvar_coef: float = 0.01,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Kit's training loss on one batch per member (``[E, B, .]`` inputs, ``targets`` the
        ``[E, B, obs + 1]`` of ``(s' - s, r)``): the sum over members of the mean of
        ``(mu - y)^2 exp(-log_var) + log_var`` (twice the Gaussian NLL), the L2 decay of
        :data:`WEIGHT_DECAY`, ``logvar_coef * (sum max_logvar - sum min_logvar)``, and the
        cross-entropy of ``done`` (``[E, B]``)."""
        mean, log_var, done_logit = self(obs, actions)
        nll = 2.0 * self.ensemble * ProbabilisticHead.nll(mean, log_var, targets)
        loss = nll + self.decay_loss() + self.head.bound_penalty(logvar_coef)
        bce = F.binary_cross_entropy_with_logits(done_logit, dones, reduction="sum")
        loss = loss + bce / dones.shape[-1]  # summed over members, as the NLL
        return loss, {"model_nll": nll.detach() / self.ensemble, "model_done_bce": bce.detach()}

    def decay_loss(self) -> torch.Tensor:
        """``sum_l c_l * 0.5 * ||W_l||^2`` over all members (biases are not decayed)."""
        layers = self.net.layers()
        coefs = [*WEIGHT_DECAY[:-1]]
        coefs += [coefs[-1]] * (len(layers) - 1 - len(coefs))
        coefs = coefs[: len(layers) - 1] + [WEIGHT_DECAY[-1]]
        return sum(
            (c * 0.5 * w.pow(2).sum() for c, (w, _) in zip(coefs, layers, strict=True)),
            torch.zeros((), device=self.input_mean.device),
        )

    @torch.no_grad()
    def mean_error(
        self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Each member's mean squared error of its mean prediction, ``[E]`` (Kit's holdout
        criterion: the variance plays no part)."""
        mean, _, _ = self(obs, actions)
        return (mean - targets).pow(2).mean(dim=(1, 2))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def step(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One model step for each row: ``(next_obs [B, obs], reward [B], done [B] bool, std
        [E, B, obs + 1])``.

        Every member predicts; each row's transition is drawn from one elite chosen uniformly
        at random, ``mean + std * eps`` (Kit's ``step``). ``std`` (all members) is returned for
        uncertainty penalties (MOPO's ``max_i ||std_i||``); ``done`` is the chosen elite's
        learned termination (logit > 0).
        """
        mean, log_var, done_logit = self(obs, actions)
        std = (0.5 * log_var).exp()
        b = obs.shape[0]
        pick = torch.randint(0, self.num_elites, (b,), generator=generator, device=obs.device)
        member = self.elite_idx[pick]  # [B]
        rows = torch.arange(b, device=obs.device)
        eps = torch.randn(mean.shape[1:], generator=generator, device=obs.device)
        sample = mean[member, rows] + std[member, rows] * eps  # [B, obs + 1]
        done = done_logit[member, rows] > 0.0
        return obs + sample[:, :-1], sample[:, -1], done, std

    @torch.no_grad()
    def sample_next_obs(
        self, obs: torch.Tensor, actions: torch.Tensor, num_samples: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``num_samples`` draws of ``s'`` from each elite: ``[num_samples, elites, B, obs]``
        (MOBILE's Bellman-inconsistency estimate; Kit's ``sample_next_obss``)."""
        mean, log_var, _ = self(obs, actions)
        mean, std = mean[self.elite_idx, :, :-1], (0.5 * log_var[self.elite_idx, :, :-1]).exp()
        eps = torch.randn((num_samples, *mean.shape), generator=generator, device=obs.device)
        return obs + mean + std * eps
