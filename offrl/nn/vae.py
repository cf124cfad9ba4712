"""A conditional VAE of the behaviour policy, ``p(a | s)``, shared by BCQ and BEAR.

Fujimoto, Meger & Precup (2019), section 4 and the official code (github.com/sfujim/BCQ,
``continuous_BCQ/BCQ.py``), which BEAR's official code (github.com/aviralkumar2907/BEAR) copies:

    encoder  E(s, a) -> (mu, log sigma) of the latent z, log sigma clamped to [-4, 15]
    decoder  D(s, z) -> a = tanh(MLP(s, z))            (the unit action box)
    loss     ||D(s, z) - a||^2 + beta * KL(N(mu, sigma) || N(0, I)),  z = mu + sigma * eps

Sampling from the prior clips ``z ~ N(0, I)`` to ``[-0.5, 0.5]`` (both official codes): decoded
actions stay in the high-density part of the latent space, i.e. close to the data. The latent has
``2 * act_dim`` dimensions by default, as in both codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offrl.nn.mlp import EnsembleMLP

__all__ = ["ConditionalVAE"]


class ConditionalVAE(nn.Module):
    """``p(a | s)`` as a VAE conditioned on the state; actions in ``[-1, 1]^act_dim``.

    Args:
        obs_dim: observation features.
        act_dim: action dimension.
        hidden: hidden widths of the encoder and of the decoder (BCQ: ``(750, 750)``).
        latent_dim: size of z; ``None`` is ``2 * act_dim`` (BCQ).
        latent_clip: prior samples are clipped to ``[-latent_clip, latent_clip]`` (BCQ: 0.5).
        log_std_min: lower clamp of the encoder's log-std (BCQ: -4).
        log_std_max: upper clamp of the encoder's log-std (BCQ: 15).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (750, 750),
        latent_dim: int | None = None,
        latent_clip: float = 0.5,
        log_std_min: float = -4.0,
        log_std_max: float = 15.0,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.latent_dim = 2 * act_dim if latent_dim is None else latent_dim
        self.latent_clip = latent_clip
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.encoder = EnsembleMLP(obs_dim + act_dim, 2 * self.latent_dim, hidden)
        self.decoder = EnsembleMLP(obs_dim + self.latent_dim, act_dim, hidden)

    def encode(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mean, log_std)`` of z, each ``[B, latent]``."""
        out = self.encoder(torch.cat([obs, actions], dim=-1))[0]
        mean, log_std = out.split(self.latent_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def decode_raw(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The decoder's pre-tanh output ``[B, act]`` (BEAR matches supports in this space)."""
        return self.decoder(torch.cat([obs, z], dim=-1))[0]

    def decode(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Actions ``tanh(D(s, z))``: ``[B, act]`` in ``[-1, 1]``."""
        return torch.tanh(self.decode_raw(obs, z))

    def sample_latent(
        self, n: int, batch: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n * batch`` draws of z from the clipped prior: ``[n * batch, latent]``."""
        device = self.encoder.flat.device
        z = torch.randn((n * batch, self.latent_dim), generator=generator, device=device)
        return z.clamp_(-self.latent_clip, self.latent_clip)

    def decode_samples(
        self,
        obs: torch.Tensor,
        n: int,
        generator: torch.Generator | None = None,
        raw: bool = False,
    ) -> torch.Tensor:
        """``n`` actions per state decoded from the clipped prior: ``[n, B, act]``.

        Sample-major (row ``j * B + b`` of the flattened result belongs to state ``b``), like
        ``obs.repeat(n, 1)``. ``raw=True`` returns the pre-tanh decoder output instead.
        """
        b = obs.shape[0]
        z = self.sample_latent(n, b, generator)
        obs_n = obs.repeat(n, 1)  # [n*B, obs], sample-major rows
        out = self.decode_raw(obs_n, z) if raw else self.decode(obs_n, z)
        return out.view(n, b, self.act_dim)

    def loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        beta: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``MSE(D(s, z), a) + beta * KL``, ``z = mu + sigma * eps`` reparameterised.

        Both terms are averaged over their elements (batch x action dims, batch x latent dims)
        as in the official BCQ code; BCQ and BEAR use ``beta = 0.5``. Returns ``(loss, info)``.
        """
        mean, log_std = self.encode(obs, actions)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        recon = self.decode(obs, mean + std * eps)
        recon_loss = (recon - actions).pow(2).mean()
        # KL(N(mu, sigma^2) || N(0, 1)) per latent element, averaged.
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - std.pow(2)).mean()
        loss = recon_loss + beta * kl
        return loss, {
            "vae_loss": loss.detach(),
            "vae_recon": recon_loss.detach(),
            "vae_kl": kl.detach(),
        }
