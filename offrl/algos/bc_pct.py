"""%BC -- behaviour cloning on the best episodes only.

Chen et al., "Decision Transformer: Reinforcement Learning via Sequence Modeling", 2021
(section 5.3, "Percentile Behavior Cloning"), introduced the baseline: sort the dataset's
episodes by return, keep the top ``X`` per cent, and clone them. It asks how much of an offline
method's gain comes from simply ignoring the bad data. CORL (Tarasov et al., 2022,
``algorithms/offline/any_percent_bc.py``) made it a standard baseline as "BC-10%":

    D_X = the max(1, floor(X * #episodes)) episodes of D with the highest returns
    min_pi  E_{(s, a) ~ D_X} [ ||pi(s) - a||^2 ]

Everything but the data is offrl's :class:`~offrl.algos.bc.BC` (deterministic ``tanh`` policy,
MSE, Adam 3e-4, batch 256, two hidden layers of 256 -- CORL's BC settings too); this class only
overrides :meth:`~offrl.algos.base.Algorithm.prepare_data` with
:meth:`offrl.data.Dataset.top_episodes`. As in CORL, returns are undiscounted (its default
``discount = 1.0``) and the observation statistics are computed on the kept episodes. CORL also
cuts trajectories at ``max_traj_len = 1000`` steps when ranking them; offrl ranks the episodes as
the dataset delimits them (terminals and timeouts), which is the same for D4RL's locomotion data.
"""

from __future__ import annotations

from dataclasses import dataclass

from offrl.algos.base import register
from offrl.algos.bc import BC, BCConfig
from offrl.data.dataset import Dataset


@dataclass
class PercentBCConfig(BCConfig):
    """%BC: BC's options plus the fraction of episodes kept."""

    frac: float = 0.1
    """Fraction of episodes kept, best undiscounted return first (CORL's ``frac = 0.1``, its
    "BC-10%"; Chen et al., 2021 report 5, 10, 25 and 100 %)."""


@register("bc_pct")
class PercentBC(BC):
    """%BC: behaviour cloning on the best episodes by return (Chen et al., 2021)."""

    config_class = PercentBCConfig
    config: PercentBCConfig

    def prepare_data(self, dataset: Dataset) -> Dataset:
        """Keep the best ``frac`` of the episodes (see :meth:`Dataset.top_episodes`)."""
        return dataset.top_episodes(self.config.frac)
