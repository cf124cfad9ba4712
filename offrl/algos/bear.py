"""BEAR -- Kumar, Fu, Tucker & Levine, "Stabilizing Off-Policy Q-Learning via Bootstrapping
Error Reduction", 2019.

An actor-critic whose policy is kept on the *support* of the behaviour policy: a conditional VAE
(:class:`~offrl.nn.ConditionalVAE`) models the data's actions, and the actor minimises its loss
subject to ``MMD(pi(.|s), pi_beta(.|s)) <= epsilon``, enforced with a Lagrange multiplier
``alpha`` trained by dual ascent:

    vae:     min  ||D(s, z) - a||^2 + 0.5 KL(E(s, a) || N(0, I))
    critic:  y = r + gamma (1 - done) [ max_j ( lambda min_i Q'_i(s', a_j)
                 + (1 - lambda) max_i Q'_i(s', a_j) ) - T log pi(a_j* | s') ],  a_j ~ pi(s')
    actor:   min_pi  E[ T log pi(a|s) - min_i Q_i(s, a) ] + alpha (MMD - epsilon)
    alpha:   max_{log alpha in [-5, 10]}  alpha (MMD - epsilon)
    act:     argmax_j Q_1(s, a_j),  a_j ~ pi(s)

The MMD (:func:`offrl.losses.mmd`, Laplacian kernel by default) compares ``n_mmd`` pre-tanh
samples of the policy with ``n_mmd`` pre-tanh VAE decodings at each state, as in both codes
(matching before the tanh keeps gradients alive where tanh saturates). For the first
``warmup_steps`` updates the actor minimises only the constraint term, so that it starts on the
data's support before the Q-values pull it anywhere.

The VAE, the MMD and the multiplier are :class:`~offrl.algos.support.SupportConstraint`, a part
that UWAC owns too. This is d3rlpy's SAC-based formulation (``d3rlpy/algos/qlearning/bear.py``): a
tanh-Gaussian actor with SAC's automatic entropy temperature T, the entropy term in the target
(taken at the target's best sample ``a_j*``), no target actor, warm-up by steps. Hence the class
extends :class:`~offrl.algos.sac.SAC` and reuses its actor, critics, temperature and target
critics. The official code (github.com/aviralkumar2907/BEAR, ``algos.py``) has no entropy term,
takes the target's actions from a target actor, averages the actor's Q over the MMD samples, clips
the policy's MMD noise to ``[-0.5, 0.5]``, and warms up for 20 "epochs" of 5000 steps; we follow
d3rlpy because it is the maintained, widely benchmarked version of the same method and fits the SAC
code offrl already tests. Defaults are d3rlpy's ``BEARConfig``: lr 1e-4 actor, 3e-4 critic and VAE,
1e-4 temperature, 1e-3 alpha, batch 256, two critics, lambda 0.75, 10 target samples, 4 MMD samples
(official default ``num_samples_match=10``), Laplacian kernel, sigma 20 (both), epsilon 0.05
(both), VAE KL weight 0.5 (both), warm-up 40,000 steps. Exceptions: the temperature T and the
Lagrange multiplier are updated at every step, warm-up included (T on fresh policy samples, so that
it is calibrated when the Q term switches on; d3rlpy updates neither during warm-up), alpha with
its own lr 1e-3 as in the official code (d3rlpy's config has ``alpha_learning_rate=1e-3`` but
builds the optimiser with the actor's lr, and skips the update during warm-up); acting scores 10
policy samples with the first critic as in the official ``select_action`` (d3rlpy: 100); the VAE
has the official (750, 750) hidden layers shared with BCQ (d3rlpy: its default (256, 256) encoder).
The official code's ensemble-variance term (off by default there) and bootstrapped critics are not
reproduced.

``tests/test_d3rlpy_same_bear.py`` replays d3rlpy 2.8.1's updates, in warm-up and after it, from
offrl's losses to float64 rounding (with ``lagrange_lr=1e-4``, the actor's lr d3rlpy uses),
with d3rlpy's remaining choices switched: no T or alpha step in warm-up (above); its VAE decoder,
trained without ``tanh`` and squashed for the MMD's behaviour samples while the policy's stay
pre-tanh; after warm-up, T stepped before the actor's loss, which then uses the new T, with the
temperature loss in T rather than log T (as its SAC); and a d3rlpy bug: its alpha step
backpropagates ``-alpha (MMD - epsilon)`` into the policy's already-zeroed gradients, cancelling
the constraint's gradient, so after warm-up d3rlpy's actor follows SAC's gradient alone. Ours
keeps the constraint's gradient, as the paper and the official code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from offrl.algos.base import register
from offrl.algos.sac import SAC, SACConfig
from offrl.algos.support import SupportConfig, SupportConstraint, sampled_backup
from offrl.data.sampler import Batch
from offrl.losses import ensemble_td_loss, td_target

Info = dict[str, torch.Tensor]


@dataclass
class BEARConfig(SupportConfig, SACConfig):
    """BEAR hyperparameters (d3rlpy's ``BEARConfig`` unless a field says otherwise): SAC's,
    with the support constraint's options of :class:`~offrl.algos.support.SupportConfig`."""

    actor_lr: float = 1e-4
    """Policy learning rate (d3rlpy ``actor_learning_rate``)."""
    critic_lr: float = 3e-4
    """Critic learning rate (d3rlpy ``critic_learning_rate``)."""
    alpha_lr: float = 1e-4
    """Entropy-temperature learning rate (d3rlpy ``temp_learning_rate``)."""


@register("bear")
class BEAR(SAC):
    """Bootstrapping Error Accumulation Reduction (Kumar et al., 2019), d3rlpy's SAC-based form."""

    config_class = BEARConfig
    config: BEARConfig

    def build(self) -> None:
        super().build()
        self.support = SupportConstraint(self.spec, self.config, self.generator, self.device)

    @torch.no_grad()
    def soft_target(self, batch: Batch) -> torch.Tensor:
        """BCQ-style target over ``num_target_samples`` policy actions, minus the entropy term
        of the chosen one: ``[B]``."""
        cfg, n = self.config, self.config.num_target_samples
        next_a, next_logp = self.actor.sample(batch.next_obs, self.generator, n=n)
        q = self.critic_target(batch.next_obs.repeat(n, 1), next_a)  # [N, n*B], sample-major
        q_next, logp = sampled_backup(q, next_logp, n, cfg.lmbda)
        if cfg.backup_entropy:
            q_next = q_next - self.alpha() * logp
        return td_target(batch.rewards, batch.dones, q_next, cfg.gamma)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Sum over critics of the mean squared TD error against :meth:`soft_target`."""
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, self.soft_target(batch))
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        return self.support.train_step(self, batch)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 of ``num_action_samples`` policy samples per state."""
        return self.support.act(self, obs)

    def frozen_policy(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`policy` with this state's policy-sample draws held as constants."""
        return self.support.frozen_act(self)
