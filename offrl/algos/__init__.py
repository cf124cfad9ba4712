"""Offline RL algorithms, one file each, registered by name.

>>> from offrl.algos import get_algorithm, list_algorithms
>>> list_algorithms()
['awac', 'bc', 'cql', 'crr', 'iql', 'sac', 'td3bc']
"""

from offrl.algos import awac, bc, cql, crr, iql, sac, td3bc  # noqa: F401  (registers the algorithms)
from offrl.algos.awac import AWAC, AWACConfig
from offrl.algos.base import (
    AlgoConfig,
    Algorithm,
    EnvSpec,
    get_algorithm,
    list_algorithms,
    register,
)
from offrl.algos.bc import BC, BCConfig
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
    "BC",
    "BCConfig",
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
