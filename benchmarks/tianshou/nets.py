"""The networks of offrl's discrete algorithms, built for Tianshou 2.0.1 (run in
benchmarks/.venv-tianshou): the layout of offrl's ``DiscreteQNetwork`` and ``CategoricalPolicy``
over frames, so that the two libraries compare with the same networks.

* :class:`Trunk`: frames (``uint8`` scaled by 1/255, as offrl does) through MinAtar's single
  3 x 3 convolution and 128 units (Young & Tian, 2019) for 10 x 10 frames, or the Nature DQN's
  three convolutions and 512 units (Mnih et al., 2015) otherwise;
* :class:`Head`: one linear layer on a trunk, in Tianshou's ``(output, state)`` convention;
  ``quantiles > 1`` shapes the output ``[B, A, N]`` (QR-DQN). Two heads on one trunk are discrete
  BCQ's Q-values and imitation logits (offrl's shared torso). ``stateful=False`` returns the
  output alone (what ``DiscreteCRR`` calls its critic with).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Trunk(nn.Module):
    """Frames ``[B, C, H, W]`` -> features ``[B, out_dim]``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        c, h, _ = shape
        if h == 10:  # MinAtar
            convs: list[nn.Module] = [nn.Conv2d(c, 16, 3, 1), nn.ReLU()]
            self.out_dim = 128
        else:  # the Nature DQN
            convs = [
                nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
            ]  # fmt: skip
            self.out_dim = 512
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, self.out_dim), nn.ReLU())

    def forward(self, obs: Any) -> torch.Tensor:
        x = torch.as_tensor(obs)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return self.fc(self.convs(x))


class Head(nn.Module):
    """``trunk`` then one linear layer to ``actions * quantiles`` outputs."""

    def __init__(
        self, trunk: Trunk, actions: int, quantiles: int = 1, stateful: bool = True
    ) -> None:
        super().__init__()
        self.stateful = stateful
        self.trunk = trunk
        self.out = nn.Linear(trunk.out_dim, actions * quantiles)
        self.actions, self.quantiles = actions, quantiles

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> Any:
        y = self.out(self.trunk(obs))
        y = y.view(-1, self.actions, self.quantiles) if self.quantiles > 1 else y
        return (y, state) if self.stateful else y
