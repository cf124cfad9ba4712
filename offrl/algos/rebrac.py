"""ReBRAC -- Tarasov, Kurenkov, Nikulin & Kolesnikov, "Revisiting the Minimalist Approach to
Offline Reinforcement Learning", NeurIPS 2023 (arXiv 2305.09836).

TD3+BC with its design choices revisited: a behaviour-cloning penalty in the critic's target as
well as in the actor's loss, LayerNorm in the critic, deeper networks, larger batches:

    critic:  min_Q  sum_i (Q_i(s, a) - y)^2,
             y = r + gamma (1 - done) [ min_i Q'_i(s', a') - beta_critic ||a' - a'_data||^2 ],
             a' = clip(pi'(s') + clip(eps, -c, c), -1, 1)
    actor:   min_pi mean( beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)) ),
             lambda = alpha / mean|min_i Q_i(s, pi(s))|  (a constant; alpha = 1; alpha itself
             without ``normalize_q``)

``a'_data`` is the dataset's next action (``Batch.next_actions``: see
:class:`~offrl.data.sampler.Batch` for the episode's last row, which has none). The squared
distances are summed over action dimensions, as in the official code, so the coefficients are
not those of TD3+BC's mean-squared BC term.

Defaults follow CORL's JAX ``algorithms/offline/rebrac.py`` (github.com/tinkoff-ai/CORL, commit
6afec90, which credits github.com/tinkoff-ai/ReBRAC): lr 1e-3 for both networks, batch 1024,
gamma 0.99, tau 5e-3, policy noise 0.2, noise clip 0.5, policy delay 2, two critics, three
hidden layers of 256 in both networks, ``Linear -> ReLU -> LayerNorm`` in the critic only, the
actor's Q term from the minimum of both critics, and CORL's ("EDAC") initialisation: biases 0.1,
output layer U(-1e-3, 1e-3) (actor) and U(-3e-3, 3e-3) (critic), other weights as
``nn.Linear``. The per-task BC coefficients (the paper's tuned values, as CORL's configs carry
them) are :data:`PAPER_DEFAULTS`; :meth:`ReBRACConfig.for_task` applies them with the domain's
learning rates, batch size and discount. The official runs do not normalise observations
(``norm_obs=False`` in offrl's trainer) and scale AntMaze rewards by 100 (``reward_scale=100``);
those are trainer settings. As in offrl's TD3+BC, the actor updates on every second update
counted from one (CORL counts from zero).

Fine-tuned online (``offrl finetune --algo rebrac``), it follows CORL's
``algorithms/finetune/rebrac.py``: half of each batch from the offline data, the policy acting
without exploration noise, the critic's BC penalty dropped and the actor's weight decayed
linearly to half of itself over the first half of the online phase
(:meth:`ReBRAC.finetune_progress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from offrl.algos.base import register, task_name
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.data.sampler import Batch
from offrl.nn import DeterministicPolicy, EnsembleCritic
from offrl.nn.mlp import EnsembleMLP

PAPER_DEFAULTS: dict[str, tuple[float, float]] = {
    # Gym-MuJoCo (v2)
    "halfcheetah-random-v2": (0.001, 0.1),
    "halfcheetah-medium-v2": (0.001, 0.01),
    "halfcheetah-expert-v2": (0.01, 0.01),
    "halfcheetah-medium-expert-v2": (0.01, 0.1),
    "halfcheetah-medium-replay-v2": (0.01, 0.001),
    "halfcheetah-full-replay-v2": (0.001, 0.1),
    "hopper-random-v2": (0.001, 0.01),
    "hopper-medium-v2": (0.01, 0.01),
    "hopper-expert-v2": (0.1, 0.1),
    "hopper-medium-expert-v2": (0.1, 0.01),
    "hopper-medium-replay-v2": (0.05, 0.5),
    "hopper-full-replay-v2": (0.01, 0.01),
    "walker2d-random-v2": (0.01, 0.0),
    "walker2d-medium-v2": (0.05, 0.1),
    "walker2d-expert-v2": (0.01, 0.5),
    "walker2d-medium-expert-v2": (0.01, 0.01),
    "walker2d-medium-replay-v2": (0.05, 0.01),
    "walker2d-full-replay-v2": (0.01, 0.01),
    # AntMaze (v2)
    "antmaze-umaze-v2": (0.003, 0.002),
    "antmaze-umaze-diverse-v2": (0.003, 0.001),
    "antmaze-medium-play-v2": (0.001, 0.0005),
    "antmaze-medium-diverse-v2": (0.001, 0.0),
    "antmaze-large-play-v2": (0.002, 0.001),
    "antmaze-large-diverse-v2": (0.002, 0.002),
    # Adroit (v1)
    "pen-human-v1": (0.1, 0.5),
    "pen-cloned-v1": (0.05, 0.5),
    "pen-expert-v1": (0.01, 0.01),
    "door-human-v1": (0.1, 0.1),
    "door-cloned-v1": (0.01, 0.1),
    "door-expert-v1": (0.05, 0.01),
    "hammer-human-v1": (0.01, 0.5),
    "hammer-cloned-v1": (0.1, 0.5),
    "hammer-expert-v1": (0.01, 0.01),
    "relocate-human-v1": (0.1, 0.01),
    "relocate-cloned-v1": (0.1, 0.01),
    "relocate-expert-v1": (0.05, 0.01),
    # Maze2d (v1)
    "maze2d-umaze-v1": (0.003, 0.001),
    "maze2d-medium-v1": (0.003, 0.001),
    "maze2d-large-v1": (0.003, 0.001),
}
"""``{D4RL task: (actor_bc_coef, critic_bc_coef)}`` -- the paper's tuned (beta_1, beta_2), as in
CORL's ``configs/offline/rebrac/<env>/<task>.yaml`` (commit 6afec90), every one read from there."""

# The settings CORL's configs share per domain (the rest are the ReBRACConfig defaults).
_DOMAINS: dict[str, dict[str, Any]] = {
    "locomotion": {},  # lr 1e-3 both, batch 1024, gamma 0.99: the defaults
    "antmaze": {"actor_lr": 3e-4, "critic_lr": 5e-5, "batch_size": 256, "gamma": 0.999},
    "adroit": {"actor_lr": 3e-4, "critic_lr": 3e-4, "batch_size": 256},
    "maze2d": {"actor_lr": 3e-4, "critic_lr": 3e-4, "batch_size": 256},
}
_DOMAIN_OF = {"halfcheetah": "locomotion", "hopper": "locomotion", "walker2d": "locomotion"}
_DOMAIN_OF |= {"antmaze": "antmaze", "maze2d": "maze2d"}
_DOMAIN_OF |= {env: "adroit" for env in ("pen", "door", "hammer", "relocate")}


@dataclass
class ReBRACConfig(TD3BCConfig):
    """ReBRAC hyperparameters (CORL's ``rebrac.py``; per-task values: :meth:`for_task`). TD3+BC's
    options keep TD3+BC's defaults (tau, policy noise and clip, policy delay, two critics) unless
    redefined here."""

    batch_size: int = 1024
    """Transitions per gradient step (CORL: 1024 on Gym-MuJoCo, 256 elsewhere)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of actor and critics (CORL: ``n_hiddens = 3`` of ``hidden_dim = 256``)."""
    alpha: float = 1.0
    """Weight of the actor's Q term: ``lambda = alpha / mean|Q|`` with ``normalize_q``, else
    ``alpha`` (CORL: 1, the BC weight is ``actor_bc_coef`` instead)."""
    actor_bc_coef: float = 0.01
    """beta_actor: weight of ``||pi(s) - a||^2`` in the actor loss. Tuned per task (see
    ``PAPER_DEFAULTS``); 0.01 is the paper's most frequent Gym-MuJoCo value (CORL's script
    default, 1.0, is overridden by every one of its configs)."""
    critic_bc_coef: float = 0.01
    """beta_critic: weight of ``||a' - a'_data||^2`` subtracted from the target's next Q
    (0 gives TD3's target). Tuned per task like ``actor_bc_coef``."""
    actor_lr: float = 1e-3
    """Actor Adam learning rate."""
    critic_lr: float = 1e-3
    """Critic Adam learning rate."""
    normalize_q: bool = True
    """Scale the actor's Q term by ``1 / mean|Q|`` (a constant), as TD3+BC does."""
    critic_layer_norm: bool = True
    """LayerNorm after every hidden activation of the critics (CORL ``critic_ln``: on)."""
    edac_init: bool = True
    """CORL's initialisation: hidden biases 0.1, output layer U(-1e-3, 1e-3) for the actor and
    U(-3e-3, 3e-3) for the critics; False keeps ``nn.Linear``'s everywhere."""
    explore_noise: float = 0.0
    """Std of the Gaussian noise added to the policy's action when acting online (``offrl
    finetune``): CORL's fine-tuning configs all set ``expl_noise: 0.0``, so the policy acts as
    it is (TD3+BC's default is TD3's 0.1)."""
    finetune_min_decay: float = 0.5
    """Fine-tuning: at online step ``k`` of ``N`` (from 0) the actor's BC weight is
    ``actor_bc_coef * max(finetune_min_decay, 1 - k / N)``, CORL's linear decay (its
    ``min_decay_coef``: with 0.5 the weight halves over the first half of the online phase and
    stays there); 1 keeps it."""
    finetune_critic_bc: bool = False
    """Fine-tuning: keep the critic's BC penalty online (CORL drops it: ``critic_bc_coef`` is
    multiplied by 0 from the first online update)."""

    paper_defaults: ClassVar[dict[str, tuple[float, float]]] = PAPER_DEFAULTS
    """``{task: (actor_bc_coef, critic_bc_coef)}`` (a class attribute, not an option)."""

    @classmethod
    def for_task(cls, name: str, **overrides: Any) -> ReBRACConfig:
        """The paper's config for D4RL task ``name``, then ``overrides``.

        ``name`` matches by environment and level, whatever its version and case, so offrl's
        ``"hopper-medium-v0"`` gets ``hopper-medium-v2``'s values:
        ``ReBRACConfig.for_task("hopper-medium-v0").actor_bc_coef == 0.01``.
        """
        key = task_name(name)
        tasks = {task_name(task): task for task in PAPER_DEFAULTS}
        if key not in tasks:
            raise KeyError(f"ReBRAC has no paper defaults for {name!r}; known: {sorted(tasks)}")
        actor_bc, critic_bc = PAPER_DEFAULTS[tasks[key]]
        domain = _DOMAINS[_DOMAIN_OF[key.split("-")[0]]]
        values = {**domain, "actor_bc_coef": actor_bc, "critic_bc_coef": critic_bc, **overrides}
        return cls(**values)


def _edac_init(net: EnsembleMLP, out_bound: float) -> None:
    """Hidden biases 0.1, output layer U(-out_bound, out_bound) (CORL, "as in EDAC")."""
    with torch.no_grad():
        *hidden, (w_out, b_out) = net.layers()
        for _, b in hidden:
            b.fill_(0.1)
        w_out.uniform_(-out_bound, out_bound)
        b_out.uniform_(-out_bound, out_bound)


@register("rebrac")
class ReBRAC(TD3BC):
    """ReBRAC (Tarasov et al., 2023): TD3+BC with BC in the critic target too, LayerNorm critics,
    deeper networks and larger batches. TD3+BC's update, with three pieces replaced: the
    networks, the next-state value and the actor loss."""

    config_class = ReBRACConfig
    config: ReBRACConfig
    needs_next_actions = True
    finetune_mix = "ratio"  # CORL's fine-tuning: half of each batch offline (mixing_ratio 0.5)
    actor_bc_scale: float = 1.0
    """Factor on ``actor_bc_coef`` (1 offline; :meth:`finetune_progress` sets it online)."""
    critic_bc_scale: float = 1.0
    """Factor on ``critic_bc_coef`` (1 offline; :meth:`finetune_progress` sets it online)."""

    def finetune_progress(self, step: int, total: int) -> None:
        """CORL's fine-tuning schedule (``algorithms/finetune/rebrac.py``): the critic's BC
        penalty off, the actor's decaying linearly to ``finetune_min_decay`` of itself
        (:class:`ReBRACConfig`)."""
        cfg = self.config
        self.actor_bc_scale = max(cfg.finetune_min_decay, 1.0 - (step - 1) / total)
        self.critic_bc_scale = 1.0 if cfg.finetune_critic_bc else 0.0

    def networks(self) -> tuple[DeterministicPolicy, EnsembleCritic]:
        """LayerNorm critics (``Linear -> ReLU -> LayerNorm``, as CORL), CORL's initialisation."""
        cfg, spec = self.config, self.spec
        actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, **cfg.actor_net())
        critic = EnsembleCritic(
            spec.obs_dim,
            spec.action_dim,
            cfg.hidden,
            cfg.num_critics,
            norm_after_activation=True,  # CORL: Dense -> ReLU -> LayerNorm
            **cfg.critic_net(),
        )
        actor.to(self.device)
        critic.to(self.device)
        if cfg.edac_init:
            _edac_init(actor.net, 1e-3)
            _edac_init(critic.net, 3e-3)
        return actor, critic

    def next_value(self, batch: Batch, next_actions: torch.Tensor) -> torch.Tensor:
        """``min_i Q'_i(s', a') - beta_critic ||a' - a'_data||^2``: ``[B]``."""
        next_q = super().next_value(batch, next_actions)
        beta = self.config.critic_bc_coef * self.critic_bc_scale
        if beta == 0.0:
            return next_q
        if batch.next_actions is None:
            raise ValueError(
                "ReBRAC's critic penalty needs Batch.next_actions: sample with "
                "TensorSampler(..., next_actions=True) (the trainer does)"
            )
        penalty = (next_actions - batch.next_actions).pow(2).sum(-1)
        return next_q - beta * penalty

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``mean(beta_actor ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)))``."""
        cfg = self.config
        pi = self.actor(batch.obs)
        q = self.critic.min_q(batch.obs, pi)  # [B]; dQ/da only, the critics stay constant
        lmbda = cfg.alpha / q.abs().mean().detach() if cfg.normalize_q else cfg.alpha
        bc = (pi - batch.actions).pow(2).sum(-1)
        loss = (cfg.actor_bc_coef * self.actor_bc_scale * bc - lmbda * q).mean()
        return loss, {"actor_loss": loss.detach(), "bc_loss": bc.detach().mean()}
