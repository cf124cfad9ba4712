"""Networks: the vectorised ensemble MLP and the policies and critics built on it."""

from offrl.nn.mlp import EnsembleMLP
from offrl.nn.policies import (
    DeterministicPolicy,
    EnsembleCritic,
    GaussianPolicy,
    TanhGaussianPolicy,
    ValueFunction,
    sample_actions,
)
from offrl.nn.vae import ConditionalVAE

__all__ = [
    "EnsembleMLP",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
    "EnsembleCritic",
    "ValueFunction",
    "sample_actions",
    "ConditionalVAE",
]
