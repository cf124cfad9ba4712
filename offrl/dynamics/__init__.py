"""Learned dynamics for model-based offline RL: the ensemble, its training, its artifact, and the
environments' known termination rules.

:class:`DynamicsEnsemble` is the model; :func:`fit_or_load` trains it once per dataset and
options and keeps it (``offrl model train|info`` on the command line); the model-based
algorithms (:mod:`offrl.algos.model_based`: MOPO, COMBO, MOBILE) roll it out.
"""

from offrl.dynamics.fit import (
    DynamicsConfig,
    FittedModel,
    fit_dynamics,
    fit_or_load,
    load_model,
    model_path,
    save_model,
)
from offrl.dynamics.model import DynamicsEnsemble
from offrl.dynamics.termination import termination_fn

__all__ = [
    "DynamicsConfig",
    "DynamicsEnsemble",
    "FittedModel",
    "fit_dynamics",
    "fit_or_load",
    "load_model",
    "model_path",
    "save_model",
    "termination_fn",
]
