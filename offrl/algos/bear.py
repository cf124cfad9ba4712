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

This is d3rlpy's SAC-based formulation (``d3rlpy/algos/qlearning/bear.py``): a tanh-Gaussian actor
with SAC's automatic entropy temperature T, the entropy term in the target (taken at the target's
best sample ``a_j*``), no target actor, warm-up by steps. Hence the class extends
:class:`~offrl.algos.sac.SAC` and reuses its actor, critics, temperature and target critics. The
official code (github.com/aviralkumar2907/BEAR, ``algos.py``) has no entropy term, takes the
target's actions from a target actor, averages the actor's Q over the MMD samples, clips the
policy's MMD noise to ``[-0.5, 0.5]``, and warms up for 20 "epochs" of 5000 steps; we follow d3rlpy
because it is the maintained, widely benchmarked version of the same method and fits the SAC code
offrl already tests. Defaults are d3rlpy's ``BEARConfig``: lr 1e-4 actor, 3e-4 critic and VAE, 1e-4
temperature, 1e-3 alpha, batch 256, two critics, lambda 0.75, 10 target samples, 4 MMD samples
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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offrl.algos.base import make_optimizer, register, soft_update
from offrl.algos.bcq import restored_rng
from offrl.algos.sac import SAC, SACConfig, Scalar
from offrl.data.sampler import Batch
from offrl.losses import ensemble_td_loss, mmd, td_target
from offrl.nn import ConditionalVAE

Info = dict[str, torch.Tensor]


@dataclass
class BEARConfig(SACConfig):
    """BEAR hyperparameters (d3rlpy's ``BEARConfig`` unless a field says otherwise)."""

    actor_lr: float = 1e-4
    """Policy learning rate (d3rlpy ``actor_learning_rate``)."""
    critic_lr: float = 3e-4
    """Critic learning rate (d3rlpy ``critic_learning_rate``)."""
    alpha_lr: float = 1e-4
    """Entropy-temperature learning rate (d3rlpy ``temp_learning_rate``)."""
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
    lmbda: float = 0.75
    """Weight of the min in the target's soft clipped double Q (d3rlpy ``lam``; official 0.75)."""
    num_target_samples: int = 10
    """Policy samples per next state in the target, max taken (official code, d3rlpy)."""
    num_action_samples: int = 10
    """Policy samples scored by Q_1 when acting (official ``select_action``; d3rlpy 100)."""
    warmup_steps: int = 40_000
    """Updates during which the actor minimises only alpha (MMD - epsilon) (d3rlpy)."""


@register("bear")
class BEAR(SAC):
    """Bootstrapping Error Accumulation Reduction (Kumar et al., 2019), d3rlpy's SAC-based form."""

    config_class = BEARConfig
    config: BEARConfig

    def build(self) -> None:
        super().build()
        cfg, spec = self.config, self.spec
        self.vae = ConditionalVAE(spec.obs_dim, spec.action_dim, cfg.vae_hidden).to(self.device)
        self.vae_optim = make_optimizer(self.vae.parameters(), cfg.vae_lr)
        self.log_lagrange = Scalar(cfg.init_log_lagrange).to(self.device)
        self.lagrange_optim = make_optimizer(self.log_lagrange.parameters(), cfg.lagrange_lr)

    def lagrange(self) -> torch.Tensor:
        """The MMD Lagrange multiplier alpha (a constant for the actor loss)."""
        return self.log_lagrange().detach().exp()

    def vae_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Reconstruction + ``vae_beta`` * KL on the dataset's actions."""
        return self.vae.loss(batch.obs, batch.actions, self.config.vae_beta, self.generator)

    @torch.no_grad()
    def soft_target(self, batch: Batch) -> torch.Tensor:
        """BCQ-style target over ``num_target_samples`` policy actions, minus the entropy term
        of the chosen one: ``[B]``."""
        cfg, n, b = self.config, self.config.num_target_samples, batch.obs.shape[0]
        next_obs = batch.next_obs.repeat(n, 1)  # [n*B, obs], sample-major rows
        next_a, next_logp = self.actor.sample(batch.next_obs, self.generator, n=n)
        q = self.critic_target(next_obs, next_a)  # [N, n*B]
        q = (cfg.lmbda * q.amin(0) + (1.0 - cfg.lmbda) * q.amax(0)).view(n, b)
        q_next, best = q.max(0)  # [B]
        if cfg.backup_entropy:
            logp = next_logp.view(n, b).gather(0, best.unsqueeze(0)).squeeze(0)
            q_next = q_next - self.alpha() * logp
        return td_target(batch.rewards, batch.dones, q_next, cfg.gamma)

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """Sum over critics of the mean squared TD error against :meth:`soft_target`."""
        q = self.critic(batch.obs, batch.actions)  # [N, B]
        loss = ensemble_td_loss(q, self.soft_target(batch))
        return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}

    def mmd_distance(self, obs: torch.Tensor) -> torch.Tensor:
        """MMD between pre-tanh policy and VAE samples at each state: ``[B]`` (differentiable
        in the policy only)."""
        cfg = self.config
        with torch.no_grad():
            data = self.vae.decode_samples(obs, cfg.num_mmd_samples, self.generator, raw=True)
        pi = self.actor.sample_raw(obs, cfg.num_mmd_samples, self.generator)  # [n, B, act]
        # [n, B, act] -> [B, n, act]: one sample set per state.
        return mmd(pi.transpose(0, 1), data.transpose(0, 1), cfg.mmd_kernel, cfg.mmd_sigma)

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, Info]:
        """``alpha (MMD - epsilon)``, plus SAC's ``T log pi - min_i Q_i`` after the warm-up."""
        dist = self.mmd_distance(batch.obs)
        loss = (self.lagrange() * (dist - self.config.mmd_threshold)).mean()
        info: Info = {"mmd": dist.detach().mean(), "_mmd": dist.detach()}
        if self.num_updates >= self.config.warmup_steps:
            sac_loss, sac_info = super().actor_loss(batch)
            loss = loss + sac_loss
            info.update(sac_info)
        else:  # log pi for the temperature step only
            with torch.no_grad():
                info["_log_prob"] = self.actor.sample(batch.obs, generator=self.generator)[1]
        return loss, info | {"actor_loss": loss.detach()}

    def lagrange_loss(self, dist: torch.Tensor) -> tuple[torch.Tensor, Info]:
        """Dual ascent on log alpha: alpha grows while the MMD exceeds ``mmd_threshold``."""
        loss = -(self.log_lagrange().exp() * (dist - self.config.mmd_threshold)).mean()
        return loss, {"lagrange_loss": loss.detach(), "lagrange": self.lagrange()}

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        cfg = self.config
        vae_loss, info = self.vae_loss(batch)
        self.optimize(self.vae_optim, vae_loss)
        critic_loss, critic_info = self.critic_loss(batch)
        self.optimize(self.critic_optim, critic_loss)
        info.update(critic_info)
        actor_loss, actor_info = self.actor_loss(batch)
        self.optimize(self.actor_optim, actor_loss)
        alpha_loss, alpha_info = self.alpha_loss(actor_info.pop("_log_prob"))
        self.optimize(self.alpha_optim, alpha_loss)
        info.update(alpha_info)
        lagrange_loss, lagrange_info = self.lagrange_loss(actor_info.pop("_mmd"))
        self.optimize(self.lagrange_optim, lagrange_loss)
        with torch.no_grad():
            self.log_lagrange.value.clamp_(cfg.log_lagrange_min, cfg.log_lagrange_max)
        soft_update(self.critic_target, self.critic, cfg.tau)
        return {**info, **actor_info, **lagrange_info}

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The highest-Q_1 of ``num_action_samples`` policy samples per state."""
        n, b = self.config.num_action_samples, obs.shape[0]
        obs_n = obs.repeat(n, 1)  # [n*B, obs], sample-major rows
        with restored_rng(self.generator) as gen:
            actions, _ = self.actor.sample(obs, gen, n=n)
        q = self.critic(obs_n, actions, members=0)[0].view(n, b)
        best = q.argmax(0)  # [B]
        return actions.view(n, b, -1)[best, torch.arange(b, device=obs.device)]
