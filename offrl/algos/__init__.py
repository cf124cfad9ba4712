"""Offline RL algorithms, one file each, registered by name.

>>> from offrl.algos import get_algorithm, list_algorithms
>>> list_algorithms()
['awac', 'awr', 'bc', 'bc_pct', 'bcq', 'bear', 'cql', 'crr', 'iql', 'sac', 'td3bc']
"""

from offrl.algos import awac, awr, bc, bc_pct, bcq, bear, cql, crr, iql, sac, td3bc  # noqa: F401  (registers the algorithms)
from offrl.algos.awac import AWAC, AWACConfig
from offrl.algos.awr import AWR, AWRConfig
from offrl.algos.base import (
    AlgoConfig,
    Algorithm,
    EnvSpec,
    get_algorithm,
    list_algorithms,
    register,
)
from offrl.algos.bc import BC, BCConfig
from offrl.algos.bc_pct import PercentBC, PercentBCConfig
from offrl.algos.bcq import BCQ, BCQConfig
from offrl.algos.bear import BEAR, BEARConfig
from offrl.algos.cql import CQL, CQLConfig
from offrl.algos.crr import CRR, CRRConfig
from offrl.algos.iql import IQL, IQLConfig
from offrl.algos.sac import SAC, SACConfig
from offrl.algos.td3bc import TD3BC, TD3BCConfig

__all__ = [
    "AlgoConfig",
    "Algorithm",
    "EnvSpec",
    "get_algorithm",
    "list_algorithms",
    "register",
    "AWAC",
    "AWACConfig",
    "AWR",
    "AWRConfig",
    "BC",
    "BCConfig",
    "PercentBC",
    "PercentBCConfig",
    "BCQ",
    "BCQConfig",
    "BEAR",
    "BEARConfig",
    "CQL",
    "CQLConfig",
    "CRR",
    "CRRConfig",
    "IQL",
    "IQLConfig",
    "SAC",
    "SACConfig",
    "TD3BC",
    "TD3BCConfig",
]
