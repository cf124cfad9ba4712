"""BEAR's support constraint, as a part that any SAC-style actor-critic can own.

Kumar, Fu, Tucker & Levine, "Stabilizing Off-Policy Q-Learning via Bootstrapping Error
Reduction", 2019, keep the policy on the *support* of the behaviour policy: a conditional VAE
(:class:`~offrl.nn.ConditionalVAE`) models the data's actions, and the actor's loss gains
``alpha (MMD(pi(.|s), pi_beta(.|s)) - epsilon)``, with the Lagrange multiplier ``alpha`` trained by
dual ascent on ``log alpha`` in ``[-5, 10]``:

    vae:     min  ||D(s, z) - a||^2 + 0.5 KL(E(s, a) || N(0, I))
    actor:   ... + alpha (MMD - epsilon)          (alone for the first ``warmup_steps`` updates)
    alpha:   max_{log alpha}  alpha (MMD - epsilon)

BEAR (:mod:`offrl.algos.bear`) and UWAC (:mod:`offrl.algos.uwac`) both own one
:class:`SupportConstraint`; each is SAC plus this part, not one derived from the other. The part
also runs what the two share around it: the update's order (:meth:`SupportConstraint.train_step`),
the warm-up of the actor on the constraint alone (:meth:`SupportConstraint.actor_loss`) and acting
by the best of sampled actions (:meth:`SupportConstraint.act`); and the module holds the target's
soft clipped double Q maximised over sampled next actions (:func:`sampled_backup`). Their defaults,
in :class:`SupportConfig`, are d3rlpy's ``BEARConfig`` and the official code's
(github.com/aviralkumar2907/BEAR), as each field says.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from offrl.algos.base import Component, EnvSpec, make_optimizer, soft_update
from offrl.algos.bcq import best_sampled_action, restored_rng
from offrl.algos.sac import SAC, Scalar
from offrl.data.sampler import Batch
from offrl.losses import mmd
from offrl.nn import ConditionalVAE, TanhGaussianPolicy

Info = dict[str, torch.Tensor]


@dataclass
class SupportConfig:
    """Options of BEAR's support constraint, sampled target and sampled acting (a mix-in of
    :class:`~offrl.algos.bear.BEARConfig`)."""

    vae_lr: float = 3e-4
    """VAE learning rate (d3rlpy ``imitator_learning_rate``; official code 1e-3)."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden widths of the VAE (official code, as BCQ; d3rlpy uses (256, 256))."""
    vae_beta: float = 0.5
    """Weight of the VAE's KL term (official code and d3rlpy ``vae_kl_weight``)."""
    lagrange_lr: float = 1e-3
    """Learning rate of log alpha, the MMD Lagrange multiplier (official code's ``lr=1e-3``)."""
    init_log_lagrange: float = 0.0
    """Initial log alpha (d3rlpy ``initial_alpha=1.0``; the official code draws it from N(0, 1))."""
    log_lagrange_min: float = -5.0
    """Lower clamp of log alpha after each dual step (official code and d3rlpy)."""
    log_lagrange_max: float = 10.0
    """Upper clamp of log alpha (official ``lagrange_thresh=10.0``; d3rlpy 10.0)."""
    mmd_threshold: float = 0.05
    """Constraint level epsilon: alpha grows while MMD > epsilon (official code, d3rlpy)."""
    mmd_kernel: str = "laplacian"
    """``"laplacian"`` or ``"gaussian"`` (official code and d3rlpy default: laplacian)."""
    mmd_sigma: float = 20.0
    """Kernel bandwidth (official ``main.py`` default and d3rlpy: 20)."""
    num_mmd_samples: int = 4
    """Policy and VAE samples per state in the MMD (d3rlpy 4; official ``main.py`` 10)."""
    warmup_steps: int = 40_000
    """Updates during which the actor minimises only alpha (MMD - epsilon) (d3rlpy)."""
    lmbda: float = 0.75
    """Weight of the min in the target's soft clipped double Q (d3rlpy ``lam``; official 0.75)."""
    num_target_samples: int = 10
    """Policy samples per next state in the target, max taken (official code, d3rlpy)."""
    num_action_samples: int = 10
    """Policy samples scored by Q_1 when acting (official ``select_action``; d3rlpy 100)."""


class SupportConstraint(Component):
    """The behaviour VAE, the MMD between the policy and it, and the multiplier alpha.

    Its networks and optimisers are saved in the owner's checkpoints under their own names
    (``vae``, ``vae_optim``, ``log_lagrange``, ``lagrange_optim``). Random draws come from the
    owner's generator, passed in. The owner is a :class:`~offrl.algos.sac.SAC` whose
    ``critic_loss`` (and, for UWAC, ``actor_q``) say how it differs.
    """

    def __init__(
        self, spec: EnvSpec, config: SupportConfig, generator: torch.Generator, device: torch.device
    ) -> None:
        self.config = config
        self.generator = generator
        self.vae = ConditionalVAE(spec.obs_dim, spec.action_dim, config.vae_hidden).to(device)
        self.vae_optim = make_optimizer(self.vae.parameters(), config.vae_lr)
        self.log_lagrange = Scalar(config.init_log_lagrange).to(device)
        self.lagrange_optim = make_optimizer(self.log_lagrange.parameters(), config.lagrange_lr)

    def warming_up(self, num_updates: int) -> bool:
        """Whether the actor minimises only the constraint term at this update."""
        return num_updates < self.config.warmup_steps

    def lagrange(self) -> torch.Tensor:
        """The MMD Lagrange multiplier alpha (a constant for the actor loss)."""
        return self.log_lagrange().detach().exp()

    def vae_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Reconstruction + ``vae_beta`` * KL on the dataset's actions."""
        return self.vae.loss(batch.obs, batch.actions, self.config.vae_beta, self.generator)

    def distance(self, obs: torch.Tensor, actor: TanhGaussianPolicy) -> torch.Tensor:
        """MMD between pre-tanh policy and VAE samples at each state: ``[B]``, differentiable
        in the policy only. Matching before the tanh keeps gradients alive where it saturates
        (both codes)."""
        cfg = self.config
        with torch.no_grad():
            data = self.vae.decode_samples(obs, cfg.num_mmd_samples, self.generator, raw=True)
        pi = actor.sample_raw(obs, cfg.num_mmd_samples, self.generator)  # [n, B, act]
        # [n, B, act] -> [B, n, act]: one sample set per state.
        return mmd(pi.transpose(0, 1), data.transpose(0, 1), cfg.mmd_kernel, cfg.mmd_sigma)

    def penalty(self, obs: torch.Tensor, actor: TanhGaussianPolicy) -> tuple[torch.Tensor, Info]:
        """The actor's constraint term ``mean alpha (MMD - epsilon)``; ``info["_mmd"]`` carries
        the per-state MMD to :meth:`lagrange_loss`."""
        dist = self.distance(obs, actor)
        loss = (self.lagrange() * (dist - self.config.mmd_threshold)).mean()
        return loss, {"mmd": dist.detach().mean(), "_mmd": dist.detach()}

    def lagrange_loss(self, dist: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """Dual ascent on log alpha: alpha grows while the MMD exceeds ``mmd_threshold``."""
        loss = -(self.log_lagrange().exp() * (dist - self.config.mmd_threshold)).mean()
        return loss, {"lagrange_loss": loss.detach(), "lagrange": self.lagrange()}

    def clamp(self) -> None:
        """Keep log alpha in ``[log_lagrange_min, log_lagrange_max]`` (after each dual step)."""
        with torch.no_grad():
            self.log_lagrange.value.clamp_(
                self.config.log_lagrange_min, self.config.log_lagrange_max
            )

    def actor_loss(self, algo: SAC, batch: Batch) -> tuple[torch.Tensor, Info]:
        """``alpha (MMD - epsilon)``, plus ``algo``'s own actor loss (SAC's ``T log pi - Q``)
        once the first ``warmup_steps`` updates are done, so that the actor starts on the
        data's support before the Q-values pull it anywhere."""
        loss, info = self.penalty(batch.obs, algo.actor)
        if not self.warming_up(algo.num_updates):
            rl_loss, rl_info = algo.actor_loss(batch)
            loss = loss + rl_loss
            info.update(rl_info)
        else:  # log pi for the temperature step only
            with torch.no_grad():
                info["_log_prob"] = algo.actor.sample(batch.obs, generator=self.generator)[1]
        return loss, info | {"actor_loss": loss.detach()}

    def train_step(self, algo: SAC, batch: Batch) -> dict[str, torch.Tensor | float]:
        """One update of the support-constrained ``algo``, in BEAR's order: VAE, critics
        (``algo.critic_loss``), actor (:meth:`actor_loss`), temperature, multiplier (then
        clamped), target critics."""
        vae_loss, info = self.vae_loss(batch)
        algo.optimize(self.vae_optim, vae_loss)
        critic_loss, critic_info = algo.critic_loss(batch)
        algo.optimize(algo.critic_optim, critic_loss)
        actor_loss, actor_info = self.actor_loss(algo, batch)
        algo.optimize(algo.actor_optim, actor_loss)
        alpha_loss, alpha_info = algo.alpha_loss(actor_info.pop("_log_prob"))
        algo.optimize(algo.alpha_optim, alpha_loss)
        lagrange_loss, lagrange_info = self.lagrange_loss(actor_info.pop("_mmd"))
        algo.optimize(self.lagrange_optim, lagrange_loss)
        self.clamp()
        soft_update(algo.critic_target, algo.critic, algo.config.tau)
        return {**info, **critic_info, **actor_info, **alpha_info, **lagrange_info}

    def acting_noise(self, algo: SAC) -> torch.Tensor:
        """The standard normal draws ``eps`` ``[n, act]`` of the ``num_action_samples`` policy
        samples that acting scores, from the generator's current state (put back afterwards:
        :func:`~offrl.algos.bcq.restored_rng`)."""
        n, act_dim = self.config.num_action_samples, algo.spec.action_dim
        with restored_rng(self.generator) as gen:
            return torch.randn((n, act_dim), generator=gen, device=algo.device)

    def best_sample(self, algo: SAC, obs: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 of the policy samples ``tanh(mu(s) + sigma(s) eps_j)`` at each state,
        for the draws ``eps`` ``[n, act]``: ``[B, act]``."""
        n = eps.shape[0]
        mu, log_std = algo.actor.head.params(algo.actor.net(obs)[0])  # [B, act] each
        # The same n draws at every state (not n * B of them), so that a state's action does not
        # depend on the batch it comes in and an export can hold the draws as constants.
        u = mu.unsqueeze(0) + log_std.exp().unsqueeze(0) * eps.unsqueeze(1)  # [n, B, act]
        actions = torch.tanh(u).reshape(-1, eps.shape[1])  # [n*B, act], sample-major rows
        q = algo.critic(obs.repeat(n, 1), actions, members=0)[0]  # [n*B]
        return best_sampled_action(actions, q, n)

    def act(self, algo: SAC, obs: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 of ``num_action_samples`` policy samples per state (official
        ``select_action``), drawn without moving the training generator."""
        return self.best_sample(algo, obs, self.acting_noise(algo))

    def frozen_act(self, algo: SAC) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`act` with this state's draws held as constants (``algo.frozen_policy``)."""
        return functools.partial(self.best_sample, algo, eps=self.acting_noise(algo))


def sampled_backup(
    q: torch.Tensor, log_prob: torch.Tensor, num_samples: int, lmbda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """BEAR's next-state value from ``n`` sampled actions per state.

    ``q`` is ``[N, n*B]`` (N critics, sample-major rows), ``log_prob`` ``[n*B]``. Each sample's
    value is the soft clipped double Q ``lmbda min_i Q_i + (1 - lmbda) max_i Q_i``; returns the
    best sample's value and its log-probability (for the entropy term), ``([B], [B])``.
    """
    q = (lmbda * q.amin(0) + (1.0 - lmbda) * q.amax(0)).view(num_samples, -1)
    q_next, best = q.max(0)  # [B]
    return q_next, log_prob.view(num_samples, -1).gather(0, best.unsqueeze(0)).squeeze(0)
