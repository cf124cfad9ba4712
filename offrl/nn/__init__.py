"""Networks from composable layers: the ensemble MLP (batched members, LayerNorm, dropout,
activations), image and dict / tuple encoders, output heads, and the policies and critics built
from them."""

from offrl.nn.encoders import MINATAR_CNN, NATURE_CNN, CNNEncoder, DictEncoder, FlattenEncoder
from offrl.nn.heads import (
    CategoricalHead,
    DeterministicHead,
    GaussianHead,
    ProbabilisticHead,
    TanhGaussianHead,
)
from offrl.nn.mlp import ACTIVATIONS, EnsembleMLP
from offrl.nn.policies import (
    CategoricalPolicy,
    DeterministicPolicy,
    DiscreteQNetwork,
    EnsembleCritic,
    GaussianPolicy,
    MixtureTanhGaussianPolicy,
    TanhGaussianPolicy,
    ValueFunction,
    sample_actions,
)
from offrl.nn.vae import ConditionalVAE

__all__ = [
    "ACTIVATIONS",
    "EnsembleMLP",
    "CNNEncoder",
    "DictEncoder",
    "FlattenEncoder",
    "NATURE_CNN",
    "MINATAR_CNN",
    "DeterministicHead",
    "GaussianHead",
    "TanhGaussianHead",
    "CategoricalHead",
    "ProbabilisticHead",
    "CategoricalPolicy",
    "DiscreteQNetwork",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
    "MixtureTanhGaussianPolicy",
    "EnsembleCritic",
    "ValueFunction",
    "sample_actions",
    "ConditionalVAE",
]
