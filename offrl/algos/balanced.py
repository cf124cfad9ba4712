"""Balanced Replay with a pessimistic Q-ensemble -- Lee, Seo, Lee, Abbeel & Shin,
"Offline-to-Online Reinforcement Learning via Balanced Replay and Pessimistic Q-Ensemble",
CoRL 2021.

Two parts, both as the paper describes them:

* **Pessimistic Q-ensemble** (section 4.2). ``members`` CQL agents are trained offline, each on
  its own seed; online, they act and learn as one: the policy is the Gaussian matching the
  moments of the members' policies (:class:`~offrl.nn.MixtureTanhGaussianPolicy`), the critic
  the average of the members' clipped double Q. The online update is SAC's, without CQL's
  penalty -- the pessimism comes from where the pretrained critics start:

      actor:   min  E[ alpha log pi(a|s) - mean_i min(Q_i1, Q_i2)(s, a) ]
      critic:  each member i regresses on its own target
               r + gamma (1 - done) [ min(Q'_i1, Q'_i2)(s', a') - alpha log pi(a'|s') ]

* **Balanced replay** (section 4.1): offline and online transitions share one prioritised pool,
  each drawn with probability proportional to a learned density ratio ``d_online / d_offline``
  (``offrl finetune``'s ``balanced`` mixing, :mod:`offrl.train.mixing`), so the near-on-policy
  offline samples are used and the rest fade out.

``offrl finetune --algo balanced_replay`` trains the ``members`` CQL runs first (or takes them,
``--init RUN ...``) and builds this algorithm from them with :meth:`BalancedReplay.from_members`.
Trained offline on its own (``offrl train``), it is an ensemble SAC without any pessimism.

Defaults are the official code's (github.com/shlee94/Off2OnRL, ``examples/ours.py`` and
``torch/sac/ours.py``): 5 members, policy, critic and temperature learning rates 3e-4, tau
5e-3, alpha started at 1. The official code also starts from one alpha for all members' policies
(the online temperature is new: the CQL runs' temperatures are not averaged), as here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from offrl.algos.base import Algorithm, register
from offrl.algos.sac import SAC, SACConfig
from offrl.data.sampler import Batch
from offrl.losses import td_target
from offrl.nn import EnsembleCritic, MixtureTanhGaussianPolicy


@dataclass
class BalancedReplayConfig(SACConfig):
    """Balanced Replay's online learner (the official code's settings)."""

    members: int = 5
    """Pretrained CQL agents in the ensemble (paper: 5)."""
    pretrain_algo: str = "cql"
    """The offline algorithm each member is trained with (``offrl finetune`` trains them)."""
    tau: float = 5e-3
    """Polyak rate of the target critics."""

    def member_options(self) -> dict[str, Any]:
        """The options each member's offline run takes from this config: the networks'
        shapes, the discount and the batch size (the rest are ``pretrain_algo``'s defaults)."""
        return {k: getattr(self, k) for k in (*_SHARED, "batch_size")}


@register("balanced_replay")
class BalancedReplay(SAC):
    """SAC on an ensemble of pretrained CQL agents (Lee et al., 2021), fine-tuned on the
    balanced replay."""

    config_class = BalancedReplayConfig
    config: BalancedReplayConfig
    finetune_mix = "balanced"

    def build(self) -> None:
        if self.config.num_critics != 2:
            raise ValueError("num_critics: each member has its clipped double Q (2)")
        super().build()

    def make_actor(self) -> MixtureTanhGaussianPolicy:
        """The members' policies, acting as the moment-matched Gaussian of their mixture."""
        cfg, spec = self.config, self.spec
        return MixtureTanhGaussianPolicy(
            spec.obs_dim, spec.action_dim, cfg.hidden, members=cfg.members, **cfg.actor_net()
        )

    def make_critic(self) -> EnsembleCritic:
        """``2 * members`` critics: member i's clipped double Q is critics ``2i`` and
        ``2i + 1``."""
        cfg, spec = self.config, self.spec
        return EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, 2 * cfg.members, **cfg.critic_net()
        )

    def _pair_min(self, q: torch.Tensor) -> torch.Tensor:
        """``[2N, B]`` critic outputs -> ``[N, B]``: each member's clipped double Q."""
        return q.view(self.config.members, 2, -1).amin(1)

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``mean_i min(Q_i1, Q_i2)(s, a)``: ``[B]``, differentiable in the actions only."""
        return self._pair_min(self.critic(obs, actions, detach_params=True)).mean(0)

    @torch.no_grad()
    def soft_target(self, batch: Batch) -> torch.Tensor:
        """Each member's own soft target, one ``a' ~ pi(s')`` for all: ``[2N, B]`` (both critics
        of member i regress on member i's)."""
        next_a, next_logp = self.actor.sample(batch.next_obs, generator=self.generator)
        q_next = self._pair_min(self.critic_target(batch.next_obs, next_a))  # [N, B]
        if self.config.backup_entropy:
            q_next = q_next - self.alpha() * next_logp
        target = td_target(batch.rewards, batch.dones, q_next, self.config.gamma)
        return target.repeat_interleave(2, dim=0)

    @classmethod
    def from_members(
        cls,
        members: Sequence[Algorithm],
        config: BalancedReplayConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> BalancedReplay:
        """The ensemble of trained SAC-family agents (CQL runs: an actor and two critics each,
        the same network options), their observation statistics taken from the first."""
        first = members[0]
        if not isinstance(first, SAC):
            raise TypeError(f"balanced_replay: members must be SAC-family, got {first.name}")
        base: dict[str, Any] = {k: getattr(first.config, k) for k in _SHARED}
        values = {**base, **(config.to_dict() if config else {}), "members": len(members)}
        algo = cls(first.spec, BalancedReplayConfig.from_dict(values), seed, device)
        for i, m in enumerate(members):
            if not isinstance(m, SAC) or m.critic.num_critics != 2:
                raise ValueError(f"member {i}: needs an actor and 2 critics ({m.name})")
            if m.spec != first.spec or not torch.equal(m.obs_mean, first.obs_mean):
                raise ValueError(f"member {i}: trained on other data than member 0")
            algo.actor.net.copy_members_from(m.actor.net, i)
            algo.critic.net.copy_members_from(m.critic.net, 2 * i)
        algo.critic_target.load_state_dict(algo.critic.state_dict())
        algo.set_normalizer(first.normalizer())
        return algo


_SHARED = ("hidden", "activation", "actor_layer_norm", "critic_layer_norm", "gamma")
"""Options the ensemble must share with its members (the networks' shapes, the discount)."""
