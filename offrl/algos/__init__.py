"""Offline RL algorithms, one file each, registered by name.

>>> from offrl.algos import get_algorithm, list_algorithms
>>> list_algorithms()  # doctest: +NORMALIZE_WHITESPACE
['awac', 'awr', 'balanced_replay', 'bc', 'bc_pct', 'bcq', 'bear', 'calql', 'combo', 'cql', 'crr',
 'discrete_bcq', 'discrete_cql', 'discrete_crr', 'discrete_crr_cql', 'edac', 'iql', 'mobile',
 'mopo', 'qrdqn', 'rebrac', 'sac', 'sac_n', 'td3bc', 'tqc', 'uwac']
"""

from offrl.algos import (  # noqa: F401  (registers the algorithms)
    awac,
    awr,
    balanced,
    bc,
    bc_pct,
    bcq,
    bear,
    calql,
    combo,
    cql,
    crr,
    discrete_bcq,
    discrete_cql,
    discrete_crr,
    discrete_crr_cql,
    edac,
    iql,
    mobile,
    mopo,
    qrdqn,
    rebrac,
    sac,
    sacn,
    td3bc,
    tqc,
    uwac,
)
from offrl.algos.awac import AWAC, AWACConfig
from offrl.algos.awr import AWR, AWRConfig
from offrl.algos.balanced import BalancedReplay, BalancedReplayConfig
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
from offrl.algos.calql import CalQL, CalQLConfig
from offrl.algos.combo import COMBO, COMBOConfig
from offrl.algos.cql import CQL, CQLConfig
from offrl.algos.crr import CRR, CRRConfig
from offrl.algos.discrete_bcq import DiscreteBCQ, DiscreteBCQConfig
from offrl.algos.discrete_cql import DiscreteCQL, DiscreteCQLConfig
from offrl.algos.discrete_crr import DiscreteCRR, DiscreteCRRConfig
from offrl.algos.discrete_crr_cql import DiscreteCRRCQL, DiscreteCRRCQLConfig
from offrl.algos.edac import EDAC, EDACConfig
from offrl.algos.iql import IQL, IQLConfig
from offrl.algos.mobile import MOBILE, MOBILEConfig
from offrl.algos.mopo import MOPO, MOPOConfig
from offrl.algos.qrdqn import QRDQN, QRDQNConfig
from offrl.algos.rebrac import ReBRAC, ReBRACConfig
from offrl.algos.sac import SAC, SACConfig
from offrl.algos.sacn import SACN, SACNConfig
from offrl.algos.td3bc import TD3BC, TD3BCConfig
from offrl.algos.tqc import TQC, TQCConfig
from offrl.algos.uwac import UWAC, UWACConfig

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
    "BalancedReplay",
    "BalancedReplayConfig",
    "BC",
    "BCConfig",
    "PercentBC",
    "PercentBCConfig",
    "BCQ",
    "BCQConfig",
    "BEAR",
    "BEARConfig",
    "CalQL",
    "CalQLConfig",
    "COMBO",
    "COMBOConfig",
    "CQL",
    "CQLConfig",
    "CRR",
    "CRRConfig",
    "DiscreteCRRCQL",
    "DiscreteCRRCQLConfig",
    "DiscreteBCQ",
    "DiscreteBCQConfig",
    "DiscreteCQL",
    "DiscreteCQLConfig",
    "DiscreteCRR",
    "DiscreteCRRConfig",
    "EDAC",
    "EDACConfig",
    "MOBILE",
    "MOBILEConfig",
    "MOPO",
    "MOPOConfig",
    "IQL",
    "IQLConfig",
    "QRDQN",
    "QRDQNConfig",
    "ReBRAC",
    "ReBRACConfig",
    "SAC",
    "SACConfig",
    "SACN",
    "SACNConfig",
    "TD3BC",
    "TD3BCConfig",
    "TQC",
    "TQCConfig",
    "UWAC",
    "UWACConfig",
]
