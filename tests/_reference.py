"""Reference networks for the ensemble tests: what the batched weights must equal."""

from __future__ import annotations

import torch
from torch import nn

from offrl.nn import EnsembleMLP


def separate_mlps(mlp: EnsembleMLP) -> list[nn.Sequential]:
    """One float64 ``Linear, ReLU, ..., Linear`` per member, holding that member's weights."""
    nets = []
    for e in range(mlp.ensemble):
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(mlp.layers()):
            lin = nn.Linear(w.shape[1], w.shape[2]).double()
            with torch.no_grad():
                lin.weight.copy_(w[e].T)  # ours is [in, out], nn.Linear's is [out, in]
                lin.bias.copy_(b[e, 0])
            layers.append(lin)
            if i < len(mlp.sizes) - 1:
                layers.append(nn.ReLU())
        nets.append(nn.Sequential(*layers))
    return nets
