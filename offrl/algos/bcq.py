"""BCQ -- Fujimoto, Meger & Precup, "Off-Policy Deep Reinforcement Learning without
Exploration", 2019 (continuous batch-constrained Q-learning, Algorithm 1).

A generative model G (a conditional VAE, :class:`~offrl.nn.ConditionalVAE`) proposes actions
the data could have contained; a perturbation actor xi_phi nudges each within
``[-Phi, Phi]``; the agent picks the proposal with the highest Q:

    vae:     min  ||D(s, z) - a||^2 + 0.5 KL(E(s, a) || N(0, I))
    actor:   max_phi  Q_1(s, a + xi_phi(s, a)),  a ~ G(s),  xi = Phi * tanh(MLP(s, a))
    critic:  y = r + gamma (1 - done) max_j [ lambda min_i Q'_i(s', a_j) + (1 - lambda) max_i
             Q'_i(s', a_j) ],  a_j = clip(a~_j + xi'(s', a~_j), -1, 1),  a~_j ~ G(s'), j = 1..n
    act:     argmax_j Q_1(s, a_j) over n perturbed proposals

Actions live in offrl's unit box, so the paper's ``max_action`` is 1. Defaults are the official
code's (github.com/sfujim/BCQ, ``continuous_BCQ``): lr 1e-3 for all three networks, batch 100,
tau 0.005, lambda 0.75, Phi 0.05, 10 proposals in the target, hidden (400, 300) for actor and
critics, (750, 750) for the VAE, a latent of ``2 * act_dim`` clipped to ``[-0.5, 0.5]`` when
sampled from the prior. Where sources disagree we follow the official code, because it produced
the paper's results: acting scores **100** proposals (the paper's Algorithm 1 reuses n = 10;
d3rlpy's ``n_action_samples`` is also 100), the target's proposals come from the *online* VAE
and the *target* perturbation actor, and acting and the actor loss use the first critic only.
Acting draws its proposals from the algorithm's own generator and restores its state afterwards,
so ``act`` is a deterministic function of the observation and the saved state, and acting never
shifts the training draws (see :func:`restored_rng`). The ``n`` latents it decodes are the same at
every state of a batch (``[n, latent]``, not ``[n * B, latent]``), so an observation's action does
not depend on the batch it comes in, and an export (:mod:`offrl.export`) holds them as constants.

d3rlpy 2.8.1's BCQ is the same update but for its VAE decoder, which has no ``tanh`` (its
``VAEDecoder``'s default ``with_squash=True`` returns the linear output), and for building its
target perturbation actor from its own random initialisation rather than as a copy of the actor:
``tests/test_d3rlpy_same_bcq.py`` replays its updates in offrl's own :meth:`BCQ.update` with the
decoder switched, to float64 rounding (the official decoder, ours, is ``tanh``-squashed).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from offrl.algos.base import AlgoConfig, Algorithm, make_optimizer, register, soft_update
from offrl.data.sampler import Batch
from offrl.losses import ensemble_td_loss, td_target
from offrl.nn import ConditionalVAE, EnsembleCritic, EnsembleMLP

Info = dict[str, torch.Tensor]


@contextmanager
def restored_rng(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Draw from ``generator`` inside the block, then put its state back.

    Sampling-based acting (BCQ, BEAR) uses it: the same observation always gets the same action,
    a checkpoint reproduces it, and evaluation does not change what training draws next.
    """
    state = generator.get_state()
    try:
        yield generator
    finally:
        generator.set_state(state)


def best_sampled_action(actions: torch.Tensor, q: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The highest-``q`` of ``n`` sampled actions per state: ``actions`` ``[n*B, act]`` and
    ``q`` ``[n*B]`` in sample-major rows; returns ``[B, act]``.

    A ``gather`` rather than indexing with ``arange(B)``, so that a traced graph (TorchScript,
    ONNX) keeps the batch size free."""
    q = q.view(num_samples, -1)  # [n, B]
    actions = actions.view(num_samples, q.shape[1], actions.shape[-1])  # [n, B, act]
    best = q.argmax(0).view(1, -1, 1).expand(1, -1, actions.shape[-1])  # [1, B, act]
    return actions.gather(0, best).squeeze(0)


@dataclass
class BCQConfig(AlgoConfig):
    """BCQ hyperparameters (official code, github.com/sfujim/BCQ, ``continuous_BCQ``)."""

    batch_size: int = 100
    """Transitions per gradient step (official code's ``batch_size``; the paper also says 100)."""
    hidden: tuple[int, ...] = (400, 300)
    """Hidden widths of the perturbation actor and of the critics (official code)."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden widths of the VAE's encoder and decoder (official code)."""
    actor_lr: float = 1e-3
    """Perturbation-actor learning rate (official code)."""
    critic_lr: float = 1e-3
    """Critic learning rate (official code)."""
    vae_lr: float = 1e-3
    """VAE learning rate (official code: Adam's default 1e-3)."""
    tau: float = 0.005
    """Polyak rate of the target actor and critics (official code)."""
    lmbda: float = 0.75
    """Weight of the min in the target's soft clipped double Q (paper section 4, code 0.75)."""
    phi: float = 0.05
    """Perturbation range Phi in the unit action box (official code's ``phi=0.05``)."""
    num_target_samples: int = 10
    """VAE proposals per next state in the target (paper's n = 10; official code)."""
    num_action_samples: int = 100
    """VAE proposals scored when acting (official code's ``select_action``: 100)."""
    vae_beta: float = 0.5
    """Weight of the VAE's KL term (official code's ``0.5 * KL_loss``)."""
    num_critics: int = 2
    """Critics in the ensemble (clipped double Q: 2)."""


class PerturbationActor(nn.Module):
    """``xi_phi(s, a) = Phi * tanh(MLP(s, a))``; :meth:`forward` returns ``clip(a + xi, -1, 1)``."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int], phi: float, **mlp: Any
    ) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim + act_dim, act_dim, hidden, **mlp)
        self.phi = phi

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Perturbed actions ``[B, act]`` in ``[-1, 1]``."""
        xi = self.phi * torch.tanh(self.net(torch.cat([obs, actions], dim=-1))[0])
        return (actions + xi).clamp(-1.0, 1.0)


@register("bcq")
class BCQ(Algorithm):
    """Batch-Constrained deep Q-learning, continuous actions (Fujimoto et al., 2019)."""

    config_class = BCQConfig
    config: BCQConfig

    def build(self) -> None:
        cfg, spec = self.config, self.spec
        self.vae = ConditionalVAE(spec.obs_dim, spec.action_dim, cfg.vae_hidden).to(self.device)
        self.actor = PerturbationActor(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.phi, **cfg.actor_net()
        )
        self.actor.to(self.device)
        self.critic = EnsembleCritic(
            spec.obs_dim, spec.action_dim, cfg.hidden, cfg.num_critics, **cfg.critic_net()
        )
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.vae_optim = make_optimizer(self.vae.parameters(), cfg.vae_lr)
        self.actor_optim = make_optimizer(self.actor.parameters(), cfg.actor_lr)
        self.critic_optim = make_optimizer(self.critic.parameters(), cfg.critic_lr)

    def vae_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Reconstruction + ``vae_beta`` * KL on the dataset's actions."""
        return self.vae.loss(batch.obs, batch.actions, self.config.vae_beta, self.generator)

    @torch.no_grad()
    def bcq_target(self, batch: Batch) -> torch.Tensor:
        """Soft clipped double Q, maximised over ``num_target_samples`` proposals: ``[B]``."""
        cfg, n, b = self.config, self.config.num_target_samples, batch.obs.shape[0]
        next_obs = batch.next_obs.repeat(n, 1)  # [n*B, obs], sample-major rows
        proposals = self.vae.decode_samples(batch.next_obs, n, self.generator).view(n * b, -1)
        q = self.critic_target(next_obs, self.actor_target(next_obs, proposals))  # [N, n*B]
        q = cfg.lmbda * q.amin(0) + (1.0 - cfg.lmbda) * q.amax(0)  # [n*B]
        q_next = q.view(n, b).amax(0)  # best proposal per state: [B]
        return td_target(batch.rewards, batch.dones, q_next, cfg.gamma)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Sum over critics of the mean squared TD error."""
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, self.bcq_target(batch))
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """``-Q_1(s, a + xi(s, a))`` for a VAE proposal ``a``; only dQ/da reaches the actor."""
        with torch.no_grad():
            proposals = self.vae.decode_samples(batch.obs, 1, self.generator)[0]
        perturbed = self.actor(batch.obs, proposals)
        q = self.critic(batch.obs, perturbed, members=0, detach_params=True)[0]
        loss = -q.mean()
        return loss, {"actor_loss": loss.detach()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        vae_loss, info = self.vae_loss(batch)
        self.optimize(self.vae_optim, vae_loss)
        critic_loss, critic_info = self.critic_loss(batch)
        self.optimize(self.critic_optim, critic_loss)
        actor_loss, actor_info = self.actor_loss(batch)
        self.optimize(self.actor_optim, actor_loss)
        soft_update(self.critic_target, self.critic, self.config.tau)
        soft_update(self.actor_target, self.actor, self.config.tau)
        return {**info, **critic_info, **actor_info}

    def acting_latents(self) -> torch.Tensor:
        """The ``num_action_samples`` prior draws of z that acting decodes, ``[n, latent]``, from
        the generator's current state (put back afterwards: :func:`restored_rng`)."""
        with restored_rng(self.generator) as gen:
            return self.vae.sample_latent(self.config.num_action_samples, 1, gen)

    def best_proposal(self, obs: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 of the perturbed proposals decoded from ``latents`` ``[n, latent]``
        at each state: ``[B, act]``."""
        n = latents.shape[0]
        obs_n = obs.repeat(n, 1)  # [n*B, obs], sample-major rows
        # The same n latents at every state: a state's action does not depend on its batch.
        z = latents.unsqueeze(1).expand(-1, obs.shape[0], -1).reshape(obs_n.shape[0], -1)
        actions = self.actor(obs_n, self.vae.decode(obs_n, z))  # [n*B, act]
        q = self.critic(obs_n, actions, members=0)[0]  # [n*B]
        return best_sampled_action(actions, q, n)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 perturbed proposal among ``num_action_samples`` per state."""
        return self.best_proposal(obs, self.acting_latents())

    def frozen_policy(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`policy` with this state's proposal latents held as constants."""
        return functools.partial(self.best_proposal, latents=self.acting_latents())
