"""Dataset production, above training: built-in datasets made by rolling out policies.

* :mod:`offrl.suite.rollout` -- roll a policy out in vectorised Gymnasium environments;
* :mod:`offrl.suite.factory` -- the D4RL protocol rebuilt from offrl's own SAC runs (behaviour
  packs, MuJoCo levels such as ``hopper-medium-v0``);
* :mod:`offrl.suite.builtin` -- the registry of built-in names (``pendulum-medium-v0``...) and
  :func:`make_builtin`, which builds and caches any of them.

Importing this package registers :func:`make_builtin` as a dataset resolver with
:func:`offrl.data.register_dataset_resolver`, so :func:`offrl.data.load_dataset` (and the trainer
below this layer) resolve built-in names without importing upwards. ``offrl/__init__.py`` imports
this package, so the registration is in place whenever any part of offrl is imported.
"""

from offrl.data.registry import register_dataset_resolver
from offrl.suite.builtin import BUILTIN, BuiltinSpec, make_builtin, pendulum_expert
from offrl.suite.factory import (
    LEVELS,
    MUJOCO_DATASETS,
    PACK_DIR,
    BehaviourPack,
    build_level,
    export_pack,
    load_pack,
    make_mujoco,
)
from offrl.suite.rollout import Policy, rollout_dataset

register_dataset_resolver(make_builtin)

__all__ = [
    "BUILTIN",
    "LEVELS",
    "MUJOCO_DATASETS",
    "PACK_DIR",
    "BehaviourPack",
    "BuiltinSpec",
    "Policy",
    "build_level",
    "export_pack",
    "load_pack",
    "make_builtin",
    "make_mujoco",
    "pendulum_expert",
    "rollout_dataset",
]
