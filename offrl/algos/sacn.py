"""SAC-N -- An, Moon, Kim & Song, "Uncertainty-Based Offline Reinforcement Learning with
Diversified Q-Ensemble", NeurIPS 2021, section 3.

Soft actor-critic with ``N`` critics instead of two, and nothing else. The clipped target

    y = r + gamma (1 - done) [ min_{i=1..N} Q'_i(s', a') - alpha log pi(a'|s') ],  a' ~ pi(s')

and the actor's ``min_i Q_i(s, a)`` are a lower confidence bound: the minimum of ``N`` samples
from the critics' spread is roughly ``mean - c_N std`` with ``c_N`` growing in ``N``, and the
spread is large exactly where the data says little -- out-of-distribution actions. So the policy
is penalised in proportion to the critics' disagreement, without a behaviour model or sampled
OOD actions; the paper's finding is that a large enough ``N`` (10 to 500 on D4RL MuJoCo) makes
this plain clipped Q-learning competitive with CQL.

offrl's :class:`~offrl.algos.sac.SAC` already takes the minimum over all ``num_critics`` critics,
evaluated as one batched ensemble (one batched matmul per layer, see :mod:`offrl.nn.mlp`), so
this class only changes the defaults. They follow CORL (Tarasov et al., 2022,
``algorithms/offline/sac_n.py`` and ``configs/offline/sac_n/``), which reproduces the official
code (github.com/snu-mllab/EDAC): N = 10, lr 3e-4 for actor, critics and temperature, batch 256,
tau 0.005, gamma 0.99, three hidden layers of 256 for actor and critics, entropy in the backup,
initial temperature 1. :data:`PRESETS` holds the per-dataset ``N`` of CORL's configs; CORL's
critic initialisation (biases 0.1, output layer U(-3e-3, 3e-3)) is not reproduced (offrl's
networks keep ``nn.Linear``'s initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from offrl.algos.base import register
from offrl.algos.sac import SAC, SACConfig

# Per-dataset N from CORL's configs (configs/offline/sac_n/<env>/<dataset>.yaml, read for the
# entries marked "read"); the rest use CORL's default of 10, as its halfcheetah runs do.
PRESETS: dict[str, dict[str, Any]] = {
    "halfcheetah-medium-v2": {"num_critics": 10},  # CORL default
    "halfcheetah-medium-replay-v2": {"num_critics": 10},  # CORL default
    "halfcheetah-medium-expert-v2": {"num_critics": 10},  # read
    "hopper-medium-v2": {"num_critics": 500},  # read
    "hopper-medium-replay-v2": {"num_critics": 200},  # read
    "walker2d-medium-v2": {"num_critics": 20},  # read
    "walker2d-medium-expert-v2": {"num_critics": 20},  # read
}

_C = TypeVar("_C", bound="SACNConfig")


@dataclass
class SACNConfig(SACConfig):
    """SAC-N hyperparameters (CORL's ``sac_n.py`` defaults; per-dataset N in :data:`PRESETS`)."""

    num_critics: int = 10
    """Critics N; the target and the actor take the minimum over all of them (CORL default 10;
    the paper uses 10-500 per dataset, see ``PRESETS``)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of actor and critics (CORL: three layers of ``hidden_dim = 256``)."""
    actor_lr: float = 3e-4
    """Policy learning rate (CORL ``actor_learning_rate``)."""
    critic_lr: float = 3e-4
    """Critic learning rate (CORL ``critic_learning_rate``)."""
    alpha_lr: float = 3e-4
    """Entropy-temperature learning rate (CORL ``alpha_learning_rate``)."""
    tau: float = 0.005
    """Polyak rate of the target critics (CORL ``tau``)."""
    backup_entropy: bool = True
    """Subtract ``alpha log pi(a'|s')`` in the target (CORL and the official code do)."""
    reward_mode: str = "none"
    """The trainer's reward transform (CORL: ``normalize_reward = False``)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    """Per-dataset values (not a config field: a class attribute)."""

    @classmethod
    def preset(cls: type[_C], dataset: str, **overrides: Any) -> _C:
        """The defaults with the per-dataset values of ``presets`` for ``dataset``, then
        ``overrides``: ``SACNConfig.preset("hopper-medium-v2").num_critics == 500``."""
        if dataset not in cls.presets:
            raise KeyError(
                f"no {cls.__name__} preset for {dataset!r}; known: {sorted(cls.presets)}"
            )
        return cls(**{**cls.presets[dataset], **overrides})


@register("sac_n")
class SACN(SAC):
    """SAC-N (An et al., 2021): SAC with N critics and the ensemble minimum in the target."""

    config_class = SACNConfig
    config: SACNConfig

    # Everything else is SAC's: N critics, the minimum over all of them in the target and the
    # actor's value (SAC.actor_q), and SAC.gradient_similarity as the diversity diagnostic.
