"""Cal-QL -- Nakamoto, Zhai, Singh, Mark, Ma, Finn, Kumar & Levine, "Cal-QL: Calibrated Offline RL
Pre-Training for Efficient Online Fine-Tuning", NeurIPS 2023.

CQL's Q-function is pushed down wherever the policy puts mass, so after offline training its
values can sit far *below* the true return of the behaviour policy; when fine-tuning starts,
the first online transitions look better than anything the critic believes in, and the policy
unlearns what it knew (the "initial drop"). Cal-QL keeps the conservative Q-function
*calibrated*: above a reference policy's value, here the behaviour policy's Monte-Carlo return
``G(s)`` from the transition onwards. The only change to CQL (eq. 4 of the paper, with the
practical version of section 5) is in the push-down term: the policy's actions are scored with

    max( Q(s, a), G(s) ),   a ~ pi(.|s) and pi(.|s')   (the uniform proposals are unchanged)

so a Q-value already under the reference return is not pushed further down. Everything else is
:class:`~offrl.algos.cql.CQL` (its :class:`~offrl.algos.cql.Conservative` part on SAC) with its
defaults (CORL's, which Cal-QL's CORL implementation also
uses); the returns come with every batch (``Batch.returns_to_go``, computed once per dataset
and, online, when each episode ends; an episode still running has none yet and is not
floored).

Fine-tuning (``offrl finetune --algo calql``) mixes offline and online data half and half in
every batch, the paper's and CORL's ``mixing_ratio = 0.5``. The calibration stays on online, as
in the paper's algorithm 1 (CORL's script switches it off when the online phase starts).
d3rlpy 2.8.1's ``CalQL`` floors the same values (``max(values, returns_to_go)`` in
``_compute_policy_is_values``) and is otherwise its CQL (see :mod:`offrl.algos.cql` for how
that differs from offrl's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offrl.algos.base import register
from offrl.algos.cql import Conservative, CQLConfig
from offrl.algos.sac import SAC
from offrl.data.sampler import Batch

Info = dict[str, torch.Tensor]


@dataclass
class CalQLConfig(CQLConfig):
    """Cal-QL hyperparameters: CQL's (CORL's MuJoCo settings), calibrated by Monte-Carlo
    returns discounted with ``gamma``."""


@register("calql")
class CalQL(SAC):
    """Calibrated Q-learning (Nakamoto et al., 2023): CQL whose push-down term stops at the
    behaviour policy's Monte-Carlo return."""

    config_class = CalQLConfig
    config: CalQLConfig
    needs_returns_to_go = True
    finetune_mix = "ratio"

    def build(self) -> None:
        self.conservative = Conservative(self.config, self.device)
        super().build()

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """CQL's loss with the policy actions' values floored at the batch's returns-to-go."""
        if batch.returns_to_go is None:
            raise ValueError("calql: the batch has no returns_to_go (its sampler was not asked)")
        # nan: an online episode still running (no return yet): no floor.
        bound = torch.nan_to_num(batch.returns_to_go, nan=-torch.inf)
        return self.conservative.critic_loss(self, batch, lower_bound=bound)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        info = super().train_step(batch)
        self.conservative.lagrange_step(self, info)
        return info
