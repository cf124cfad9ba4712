"""d3rlpy 2.8.1's conditional VAE decoder in offrl, for the BCQ and BEAR comparisons
(``tests/test_d3rlpy_same_bcq.py``, ``tests/test_d3rlpy_same_bear.py``).

offrl's :class:`~offrl.nn.ConditionalVAE` is the official BCQ code's (which BEAR's official code
copies): the decoder's action is ``tanh(D(s, z))``, trained through the ``tanh``, and BEAR
matches supports on the pre-``tanh`` output. d3rlpy's ``VAEDecoder`` reads its ``with_squash``
flag the other way round: its default, ``with_squash=True``, returns the last linear layer's
output, and ``with_squash=False`` its ``tanh``. So d3rlpy trains the decoder without ``tanh``
(``compute_vae_error``), BCQ perturbs un-squashed proposals (its actor clips the result to the
box), and BEAR's MMD compares the policy's pre-``tanh`` samples with the decoder's *squashed*
ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from offrl.algos.base import make_optimizer
from offrl.nn import ConditionalVAE


class D3rlpyDecoderVAE(ConditionalVAE):
    """offrl's VAE with d3rlpy's decoder: :meth:`decode` (offrl's squashed action) is the linear
    output, :meth:`decode_raw` (offrl's pre-``tanh`` output) its ``tanh``."""

    def decode(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return super().decode_raw(obs, z)

    def decode_raw(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().decode_raw(obs, z))


def use_d3rlpy_decoder(owner: Any, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
    """Give ``owner`` (a BCQ, a BEAR's support constraint: whatever holds ``vae`` and
    ``vae_optim``) a fresh :class:`D3rlpyDecoderVAE` of the same shape, and a fresh optimiser
    with the old one's learning rate."""
    lr = owner.vae_optim.param_groups[0]["lr"]
    owner.vae = D3rlpyDecoderVAE(obs_dim, act_dim, hidden)
    owner.vae_optim = make_optimizer(owner.vae.parameters(), lr)
