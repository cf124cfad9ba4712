"""EDAC -- An, Moon, Kim & Song, "Uncertainty-Based Offline Reinforcement Learning with
Diversified Q-Ensemble", NeurIPS 2021, section 4.

SAC-N (:mod:`offrl.algos.sacn`) needs many critics because they tend to agree where they should
not: the penalty ``min_i Q_i`` exerts on an out-of-distribution action is only as large as the
critics' spread along that direction, and when their action-gradients ``grad_a Q_i(s, a)`` point
the same way (the paper finds the smallest eigenvalue of their covariance collapses) a policy can
step off the data along a direction where every critic errs alike. EDAC adds to the critics' loss
the ensemble gradient diversity term (eq. 7), computed at the dataset's actions:

    L_div = 1 / (N - 1) * sum_{i != j} < grad_a Q_i(s, a), grad_a Q_j(s, a) >
            / ( |grad_a Q_i(s, a)| |grad_a Q_j(s, a)| ),     a from the data

    critic:  min_Q  sum_i E[(Q_i(s, a) - y)^2]  +  eta * E_s[L_div]

i.e. ``eta`` times ``N`` times the mean pairwise cosine similarity of the critics'
action-gradients, which pushes them apart and lets ``N = 10 ... 50`` do what SAC-N needed up to
500 critics for. Everything else -- target, actor, temperature -- is SAC-N's; this class overrides
only :meth:`SAC.critic_loss`.

The penalty differentiates a gradient, so it needs a double backward through the critics: the
critics' backward is rebuilt from ordinary autograd ops when a graph is created through it
(:mod:`offrl.nn.mlp`), so the same critic call serves both. The gradients
are normalised with ``+ 1e-8`` and the pairs summed as in CORL (Tarasov et al., 2022,
``algorithms/offline/edac.py``), whose defaults this follows: N = 10, eta = 1, lr 3e-4 (actor,
critics, temperature), batch 256, tau 0.005, gamma 0.99, three hidden layers of 256.
:data:`PRESETS` holds the paper's per-dataset (N, eta) (CORL's ``configs/offline/edac/`` and the
official code's suggested settings, as collected by OfflineRL-Kit's ``run_edac.py``). CORL's
critic initialisation (biases 0.1, output layer U(-3e-3, 3e-3)) is not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from offrl.algos.base import register
from offrl.algos.sac import SAC
from offrl.algos.sacn import SACNConfig
from offrl.data.sampler import Batch
from offrl.losses import ensemble_gradient_similarity, ensemble_td_loss

Info = dict[str, torch.Tensor]

# (N, eta) per D4RL dataset: CORL configs/offline/edac (entries marked "read" were checked there)
# and the official code's suggestions as listed in OfflineRL-Kit's run_edac.py (all entries).
PRESETS: dict[str, dict[str, Any]] = {
    "halfcheetah-medium-v2": {"num_critics": 10, "eta": 1.0},
    "halfcheetah-medium-replay-v2": {"num_critics": 10, "eta": 1.0},
    "halfcheetah-medium-expert-v2": {"num_critics": 10, "eta": 5.0},  # read
    "hopper-medium-v2": {"num_critics": 50, "eta": 1.0},
    "hopper-medium-replay-v2": {"num_critics": 50, "eta": 1.0},
    "hopper-medium-expert-v2": {"num_critics": 50, "eta": 1.0},  # read
    "walker2d-medium-v2": {"num_critics": 10, "eta": 1.0},
    "walker2d-medium-replay-v2": {"num_critics": 10, "eta": 1.0},
    "walker2d-medium-expert-v2": {"num_critics": 10, "eta": 5.0},
}


@dataclass
class EDACConfig(SACNConfig):
    """EDAC hyperparameters (CORL's ``edac.py`` defaults; per-dataset (N, eta) in ``PRESETS``)."""

    eta: float = 1.0
    """Weight of the gradient-diversity term (CORL default 1.0; the paper uses 0-5 per dataset).
    0 gives SAC-N exactly (the term is then not computed)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS


@register("edac")
class EDAC(SAC):
    """Ensemble-Diversified Actor-Critic (An et al., 2021): SAC-N plus eta * gradient diversity."""

    config_class = EDACConfig
    config: EDACConfig

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """SAC-N's TD loss plus ``eta`` times the gradient-diversity term, one forward pass."""
        if self.config.eta == 0.0:
            return super().critic_loss(batch)
        target = self.soft_target(batch)
        n = self.config.num_critics
        # One copy of the batch per critic, so that d(sum_i Q_i)/da splits into each Q_i's own
        # action-gradient: obs [N, B, obs], actions [N, B, act].
        obs = batch.obs.expand(n, *batch.obs.shape)
        actions = batch.actions.expand(n, *batch.actions.shape).clone().requires_grad_(True)
        q = self.critic(obs, actions)  # [N, B], twice differentiable
        (grads,) = torch.autograd.grad(q.sum(), actions, create_graph=True)  # [N, B, act]
        diversity = ensemble_gradient_similarity(grads)
        td = ensemble_td_loss(q, target)
        loss = td + self.config.eta * diversity
        info = {
            "critic_loss": loss.detach(),
            "td_loss": td.detach(),
            "q_mean": q.detach().mean(),
            # The mean pairwise cosine similarity of the action-gradients (what eta lowers).
            "grad_similarity": diversity.detach() / n,
        }
        return loss, info
