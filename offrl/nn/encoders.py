"""Observation encoders: images (stacked frames) and dict / tuple observations.

An encoder maps one batch of observations to features ``[B, F]`` that an
:class:`~offrl.nn.mlp.EnsembleMLP` (or any head) takes as input; ``out_dim`` is ``F``. They
are ordinary ``nn.Module`` s, so they compose with every other layer and run on any device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["CNNEncoder", "DictEncoder", "FlattenEncoder", "NATURE_CNN", "MINATAR_CNN"]

NATURE_CNN: tuple[tuple[int, int, int], ...] = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""``(channels, kernel, stride)`` per convolution of the DQN encoder (Mnih et al., 2015, Nature:
84x84 frames, 4 stacked), used by QR-DQN and the discrete offline algorithms on Atari."""

MINATAR_CNN: tuple[tuple[int, int, int], ...] = ((16, 3, 1),)
"""MinAtar's encoder (Young & Tian, 2019): one 3x3 convolution of 16 channels over 10x10
frames."""


class FlattenEncoder(nn.Module):
    """``[B, *shape] -> [B, prod(shape)]`` in torch's default float dtype (a vector observation
    as it is)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.out_dim = int(torch.Size(shape).numel())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.flatten(1).to(torch.get_default_dtype())


class CNNEncoder(nn.Module):
    """Convolutions with ReLU, then a linear layer with ReLU: ``[B, C, H, W] -> [B, features]``.

    ``uint8`` frames are scaled to ``[0, 1]`` (divided by 255) inside, so a replay buffer can
    keep them as bytes; float inputs are used as they are.

    Args:
        obs_shape: ``(C, H, W)`` of one observation (``C``: channels times stacked frames).
        features: width of the output layer.
        convs: ``(channels, kernel, stride)`` per convolution (default :data:`NATURE_CNN`).
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        features: int = 512,
        convs: Sequence[tuple[int, int, int]] = NATURE_CNN,
    ) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"CNNEncoder needs (C, H, W) observations, got shape {obs_shape}")
        layers: list[nn.Module] = []
        channels = obs_shape[0]
        for out, kernel, stride in convs:
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
            channels = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *obs_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_dim = features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs
        return self.fc(self.convs(x))


def _default_encoder(shape: Sequence[int]) -> nn.Module:
    return CNNEncoder(shape) if len(shape) == 3 else FlattenEncoder(shape)


class DictEncoder(nn.Module):
    """Encodes each part of a dict (or tuple) observation and concatenates the features.

    Args:
        shapes: the shape of each part, by key (a dict observation) or in order (a tuple).
        encoders: an encoder per key (or index) to use instead of the default, which is a
            :class:`CNNEncoder` for ``(C, H, W)`` parts and :class:`FlattenEncoder` otherwise.
            Each must have an ``out_dim`` attribute.

    Call it with a dict of ``[B, *shape]`` tensors (keys as in ``shapes``) or a tuple in the
    same order; the output is ``[B, sum of out_dim]``, parts in key order.
    """

    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]],
        encoders: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.is_tuple = not isinstance(shapes, Mapping)
        named = (
            {str(i): s for i, s in enumerate(shapes)}
            if not isinstance(shapes, Mapping)
            else dict(shapes)
        )
        given = dict(encoders or {})
        unknown = sorted(set(given) - set(named))
        if unknown:
            raise ValueError(f"DictEncoder: encoders for unknown keys {unknown}")
        self.names = list(named)
        self.parts = nn.ModuleDict(
            {k: given.get(k) or _default_encoder(shape) for k, shape in named.items()}
        )
        self.out_dim = sum(int(getattr(m, "out_dim")) for m in self.parts.values())  # noqa: B009

    def forward(self, obs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(obs, Mapping):
            missing = [k for k in self.names if k not in obs]
            if missing:
                raise KeyError(f"observation lacks the key(s) {missing}")
            parts = [self.parts[k](obs[k]) for k in self.names]
        else:
            if len(obs) != len(self.names):
                raise ValueError(f"expected a tuple of {len(self.names)} parts, got {len(obs)}")
            parts = [self.parts[k](o) for k, o in zip(self.names, obs, strict=True)]
        return torch.cat(parts, dim=-1)
