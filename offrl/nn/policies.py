"""Policies and critics built on :class:`~offrl.nn.mlp.EnsembleMLP`.

All continuous policies act in the unit box ``[-1, 1]^act_dim``; ``Algorithm.act`` maps actions
to the environment's bounds. :class:`CategoricalPolicy` acts with action indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from offrl.nn.encoders import MINATAR_CNN, NATURE_CNN, CNNEncoder, FlattenEncoder
from offrl.nn.heads import CategoricalHead, GaussianHead, TanhGaussianHead
from offrl.nn.mlp import EnsembleMLP

__all__ = [
    "CategoricalPolicy",
    "DiscreteQNetwork",
    "observation_encoder",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
    "EnsembleCritic",
    "ValueFunction",
    "sample_actions",
]


class DeterministicPolicy(nn.Module):
    """``a = tanh(MLP(s))`` (TD3, TD3+BC, ReBRAC, deterministic BC).

    ``layer_norm`` puts a LayerNorm in every hidden layer (``**mlp`` passes further
    :class:`~offrl.nn.mlp.EnsembleMLP` options, e.g. ``activation``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim, act_dim, hidden, layer_norm=layer_norm, **mlp)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, obs_dim] -> [B, act_dim]`` in ``[-1, 1]``."""
        return torch.tanh(self.net(obs)[0])


class CategoricalPolicy(nn.Module):
    """A distribution over discrete actions, for vector or image observations: an encoder
    (:class:`~offrl.nn.encoders.CNNEncoder` for ``(C, H, W)`` frames: MinAtar's one convolution for
    10 x 10 frames, DQN's Nature CNN otherwise; the observation flattened for a vector), an MLP
    and a :class:`~offrl.nn.heads.CategoricalHead`. Acts greedily."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        hidden: Sequence[int] = (256, 256),
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.encoder = observation_encoder(obs_shape)
        self.head = CategoricalHead(num_actions)
        self.net = EnsembleMLP(
            int(self.encoder.out_dim), num_actions, hidden, layer_norm=layer_norm, **mlp
        )

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, num_actions]``."""
        return self.net(self.encoder(obs))[0]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action: ``[B]`` int64."""
        return self.head.greedy(self.logits(obs))


class DiscreteQNetwork(nn.Module):
    """Q-values of every discrete action at once: an encoder (as :class:`CategoricalPolicy`'s),
    an MLP, and ``num_actions * quantiles`` outputs -- plus ``extra`` outputs of the same torso
    (discrete BCQ's imitation logits).

    With ``hidden=()`` on frames it is the Nature DQN (Mnih et al., 2015: three convolutions, a
    512-unit layer, the output layer) or MinAtar's DQN (Young & Tian, 2019: one convolution, a
    128-unit layer). With ``quantiles > 1`` each action's value is a distribution given by
    quantiles at :func:`offrl.losses.quantile_midpoints` (QR-DQN, Dabney et al., 2018), and the
    Q-value is their mean.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        hidden: Sequence[int] = (),
        quantiles: int = 1,
        extra: int = 0,
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.num_actions, self.num_quantiles, self.extra = num_actions, quantiles, extra
        self.encoder = observation_encoder(obs_shape)
        out = num_actions * quantiles + extra
        self.net = EnsembleMLP(int(self.encoder.out_dim), out, hidden, layer_norm=layer_norm, **mlp)

    def outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(quantiles [B, A, N], extra [B, extra])`` in one pass."""
        out = self.net(self.encoder(obs))[0]
        q, extra = out.split((self.num_actions * self.num_quantiles, self.extra), dim=-1)
        return q.view(-1, self.num_actions, self.num_quantiles), extra

    def quantiles(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, A, N]`` (``N = 1``: the Q-values)."""
        return self.outputs(obs)[0]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``[B, A]`` (the mean of each action's quantiles)."""
        return self.quantiles(obs).mean(-1)


def observation_encoder(obs_shape: Sequence[int]) -> CNNEncoder | FlattenEncoder:
    """The default encoder of one observation shape: a CNN for ``(C, H, W)`` frames (MinAtar's
    for 10 x 10, the Nature DQN's otherwise), flattening for anything else."""
    if len(obs_shape) == 3:
        convs = MINATAR_CNN if tuple(obs_shape[1:]) == (10, 10) else NATURE_CNN
        return CNNEncoder(obs_shape, features=128 if convs is MINATAR_CNN else 512, convs=convs)
    return FlattenEncoder(obs_shape)


class GaussianPolicy(nn.Module):
    """A diagonal Gaussian with mean ``tanh(mu(s))`` (Gaussian BC, IQL, AWR).

    The mean is squashed into the unit box so that the deterministic action is always valid. The
    log-std is state-dependent (a second head) or, with ``state_dependent_std=False``, one learned
    vector as in IQL's official code; it is clamped to ``[log_std_min, log_std_max]``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        state_dependent_std: bool = True,
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.head = GaussianHead(act_dim, log_std_min, log_std_max, state_dependent_std)
        self.net = EnsembleMLP(obs_dim, self.head.in_dim(), hidden, layer_norm=layer_norm, **mlp)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """The action distribution at ``obs``."""
        return self.head(self.net(obs)[0])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (deterministic acting)."""
        return self.head.mode(self.net(obs)[0])

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw per state, clamped to the unit box: ``[B, act]`` (exploration)."""
        return sample_actions(self.distribution(obs), 1, generator)[0]


class EnsembleCritic(nn.Module):
    """``N`` Q-functions ``Q_i(s, a)`` evaluated together: ``[B, obs], [B, act] -> [N, B]``.

    With ``outputs = M > 1``, each critic is distributional, ``M`` quantiles of the return
    ``Z_i(s, a)`` (TQC): ``[N, B, M]``. ``layer_norm`` puts a LayerNorm in every hidden layer
    (ReBRAC, LB-SAC); ``**mlp`` passes further :class:`~offrl.nn.mlp.EnsembleMLP` options
    (``activation``, ``norm_after_activation``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        num_critics: int = 2,
        layer_norm: bool = False,
        outputs: int = 1,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(
            obs_dim + act_dim, outputs, hidden, ensemble=num_critics, layer_norm=layer_norm, **mlp
        )
        self.num_critics = num_critics
        self.outputs = outputs

    def forward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        members: slice | int | None = None,
        detach_params: bool = False,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Q-values ``[N', B]`` (quantiles ``[N', B, M]`` with ``outputs = M > 1``).

        ``members`` selects a subset of critics; ``detach_params`` gives dQ/da only;
        ``dropout > 0`` draws a Monte-Carlo dropout mask per row from ``generator`` (UWAC).
        """
        x = torch.cat([obs, actions], dim=-1)
        out = self.net(
            x, members=members, detach_params=detach_params, dropout=dropout, generator=generator
        )
        return out.squeeze(-1) if self.outputs == 1 else out

    def min_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``min_i Q_i(s, a)``: ``[B]``, differentiable in the inputs only, with a backward pass
        through each row's minimising critic alone (see :meth:`EnsembleMLP.min`)."""
        return self.net.min(torch.cat([obs, actions], dim=-1))


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mu(s), sigma(s))``: SAC's squashed Gaussian (SAC, CQL, AWAC...).

    :meth:`sample` returns reparameterised actions and their log-probabilities with the
    change-of-variables correction ``log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2)``;
    :meth:`log_prob` scores given actions (clipped just inside ``(-1, 1)``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        layer_norm: bool = False,
        ensemble: int = 1,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.head = TanhGaussianHead(act_dim, log_std_min, log_std_max)
        # Several members only for a subclass that combines them (MixtureTanhGaussianPolicy).
        self.net = EnsembleMLP(
            obs_dim, self.head.in_dim(), hidden, ensemble, layer_norm=layer_norm, **mlp
        )
        self.act_dim = act_dim

    def _params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.params(self.net(obs)[0])

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None, n: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(actions [B, act], log_prob [B])``.

        With ``n``: ``n`` draws per state, ``[n*B, act]`` and ``[n*B]`` in sample-major rows (the
        row order of ``obs.repeat(n, 1)``), from one network pass over the ``B`` states instead
        of ``n`` passes over repeated ones.
        """
        mu, log_std = self._params(obs)
        if n is not None:
            mu, log_std = mu.repeat(n, 1), log_std.repeat(n, 1)
        return self.head.sample_from(mu, log_std, generator)

    def sample_raw(
        self, obs: torch.Tensor, n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` reparameterised *pre-tanh* draws ``u ~ N(mu(s), sigma(s))``: ``[n, B, act]``
        (BEAR matches supports in this space, where tanh saturation cannot kill gradients)."""
        mu, log_std = self._params(obs)
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + log_std.exp() * eps

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` of given actions in ``[-1, 1]``: ``[B]``."""
        return self.head.log_prob_of(*self._params(obs), actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(mu(s))``."""
        return self.head(self.net(obs)[0])


class MixtureTanhGaussianPolicy(TanhGaussianPolicy):
    """``members`` squashed-Gaussian policies acting as one: the Gaussian that matches the
    moments of their equal-weight mixture before the tanh,

        mu = mean_i mu_i,   sigma^2 = mean_i (mu_i^2 + sigma_i^2) - mu^2,

    (Balanced Replay's ensemble of pretrained policies, Lee et al., 2021), its log-std clamped
    to ``[log_std_min, log_std_max]``. The members are one batched
    :class:`~offrl.nn.mlp.EnsembleMLP`; sampling, log-probabilities and the deterministic action
    are :class:`TanhGaussianPolicy`'s on the matched Gaussian.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        members: int = 5,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__(
            obs_dim, act_dim, hidden, log_std_min, log_std_max, layer_norm, members, **mlp
        )

    def _params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu_i, log_std_i = self.head.params(self.net(obs))  # [E, B, act] each
        mu = mu_i.mean(0)
        var = (mu_i.pow(2) + (2.0 * log_std_i).exp()).mean(0) - mu.pow(2)
        log_std = 0.5 * var.clamp_min(1e-12).log()
        return mu, log_std.clamp(self.head.log_std_min, self.head.log_std_max)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(mu(s))`` of the matched Gaussian."""
        return torch.tanh(self._params(obs)[0])


class ValueFunction(nn.Module):
    """State values ``V(s)``, optionally an ensemble: ``[B, obs] -> [N, B]`` (``layer_norm`` and
    ``**mlp`` as :class:`EnsembleCritic`'s)."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (256, 256),
        num: int = 1,
        layer_norm: bool = False,
        **mlp: Any,
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim, 1, hidden, ensemble=num, layer_norm=layer_norm, **mlp)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def sample_actions(dist: torch.distributions.Normal, m: int, gen: torch.Generator) -> torch.Tensor:
    """``m`` draws per row from ``dist`` with ``gen``, clamped to the unit box: ``[m, B, act]``."""
    loc, scale = dist.loc, dist.scale
    eps = torch.randn((m, *loc.shape), generator=gen, device=loc.device, dtype=loc.dtype)
    return (loc + scale * eps).clamp_(-1.0, 1.0)
