"""A new algorithm in one override: CRR with CQL's conservative penalty on its critic.

CRR (``offrl.algos.crr``) trains its critic by plain TD learning and its actor by
advantage-weighted behaviour cloning. Here we keep all of that and add one thing, CQL's
regulariser (Kumar et al., 2020, eq. 4), to the critic's loss:

    critic loss = CRR's TD loss + cql_alpha * sum_i E_s[log sum_a exp Q_i(s, a) - Q_i(s, a_data)]

which pushes Q down on actions the data does not contain and up on the ones it does. The
log-sum-exp over actions is estimated, as in CQL, from ``num_samples`` uniform actions and
``num_samples`` actions of the current policy, each weighted by its proposal's density.

Run it:   python examples/crr_cql.py
    or:   offrl train --import examples/crr_cql.py --algo crr_cql --dataset pendulum-medium-v0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from offrl.algos import CRR, CRRConfig, register
from offrl.data.sampler import Batch
from offrl.losses import conservative_penalty
from offrl.nn import sample_actions


@dataclass
class CRRCQLConfig(CRRConfig):
    """CRR's hyperparameters plus the two of the conservative penalty."""

    cql_alpha: float = 5.0
    """Weight of the conservative penalty (0 gives back plain CRR)."""
    num_samples: int = 4
    """Actions drawn per state from each proposal (uniform and the policy)."""


@register("crr_cql")
class CRRCQL(CRR):
    """CRR whose critic also carries CQL's conservative penalty (one overridden loss)."""

    config_class = CRRCQLConfig
    config: CRRCQLConfig

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, info = super().critic_loss(batch)  # CRR's TD loss, unchanged
        k, b, d = self.config.num_samples, batch.obs.shape[0], self.spec.action_dim
        obs = batch.obs.repeat(2 * k, 1)  # one row per sampled action, sample-major
        with torch.no_grad():  # the sampled actions and the log-density of their proposal
            uniform = torch.rand((k * b, d), generator=self.generator, device=self.device)
            dist = self.actor.distribution(batch.obs.repeat(k, 1))
            pi = sample_actions(dist, 1, self.generator)[0]  # clamped to [-1, 1]
            log_uniform = torch.full((k, b), -d * math.log(2.0), device=self.device)
            log_pi = dist.log_prob(pi).sum(-1).view(k, b)
            log_density = torch.cat([log_uniform, log_pi])  # [2k, B]
        actions = torch.cat([2.0 * uniform - 1.0, pi])  # uniform on [-1, 1]^d, then pi(s)
        q_sampled = self.critic(obs, actions).view(-1, 2 * k, b)  # [N, 2k, B]
        q_data = self.critic(batch.obs, batch.actions)  # [N, B]
        gap = conservative_penalty(q_sampled, log_density, q_data)  # [N]: one per critic
        loss = loss + self.config.cql_alpha * gap.sum()
        info |= {"td_loss": info["critic_loss"], "cql_gap": gap.detach().mean()}
        return loss, info | {"critic_loss": loss.detach()}


if __name__ == "__main__":
    from offrl.train import TrainConfig, train

    final = train(TrainConfig(algo="crr_cql", dataset="pendulum-medium-v0", steps=2000))
    print(f"return {final['return_mean']:.1f} (behaviour {final['behaviour_return_mean']:.1f})")
