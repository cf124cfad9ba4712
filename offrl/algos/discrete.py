"""What the discrete-action algorithms share: their common options and their Q-network.

QR-DQN, discrete BCQ, discrete CQL and discrete CRR learn Q-values of every action at once from
one network over the observation: the Nature DQN over stacked Atari frames, MinAtar's small CNN
over its 10 x 10 frames, an MLP over vector observations (:class:`~offrl.nn.DiscreteQNetwork`).
Their defaults are the second seed's library's Atari examples (Tianshou 2.0.1:
``atari_qrdqn.py``, ``atari_bcq.py``, ``atari_cql.py``, ``atari_crr.py``): batch 32, one-step
targets, a target network copied every ``target_update_every`` updates.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from offrl.algos.base import AlgoConfig, Algorithm, EnvSpec, hard_update
from offrl.losses import conservative_penalty
from offrl.nn import DiscreteQNetwork

__all__ = [
    "DiscreteConfig",
    "q_network",
    "greedy",
    "action_values",
    "cql_penalty",
    "step_and_copy",
]


@dataclass
class DiscreteConfig(AlgoConfig):
    """Options every discrete-action algorithm shares."""

    batch_size: int = 32
    """Transitions per gradient step (DQN's 32)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layers after the encoder for *vector* observations. Frames go through the CNN and
    its fully connected layer (Nature DQN: 512 units, MinAtar: 128) straight to the output
    layer, as in the papers' networks."""
    lr: float = 1e-4
    """Adam learning rate (Tianshou's Atari examples)."""
    target_update_every: int = 500
    """Updates between copies of the network into its target (Tianshou's Atari examples)."""
    target_copy: Literal["before_update", "before_step", "after_step"] = "before_step"
    """When every ``target_update_every``-th update copies the networks into their targets:
    ``before_update``, before it computes its targets, which then already use the copy
    (Tianshou's order in ``DiscreteCRR``); ``before_step``, after it computes them and before
    its optimiser step, so the copy of the weights it starts from serves from the next update
    (Tianshou's order in its Q-learning algorithms, whose targets come before the copy);
    ``after_step``, after its step, copying the weights it ends with (d3rlpy's order). The first
    update copies in every case."""

    def torso(self, spec: EnvSpec) -> tuple[int, ...]:
        """The hidden layers between the encoder and the output layer for ``spec``'s
        observations: :attr:`hidden` for vectors, none for frames."""
        return () if len(spec.obs_shape) == 3 else self.hidden


def q_network(
    spec: EnvSpec, config: DiscreteConfig, device: torch.device, quantiles: int = 1, extra: int = 0
) -> tuple[DiscreteQNetwork, DiscreteQNetwork]:
    """A :class:`~offrl.nn.DiscreteQNetwork` for ``spec`` on ``device`` and its frozen target
    copy."""
    net = DiscreteQNetwork(
        spec.obs_shape,
        spec.action_dim,
        config.torso(spec),
        quantiles=quantiles,
        extra=extra,
        **config.critic_net(),
    ).to(device)
    return net, copy.deepcopy(net).requires_grad_(False)


def greedy(q: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """``argmax_a Q(s, a)`` over ``[B, A]`` Q-values, among the ``allowed`` actions only
    (``[B, A]`` bool; discrete BCQ's filter) if given."""
    if allowed is not None:
        q = q.masked_fill(~allowed, float("-inf"))
    return q.argmax(-1)


def action_values(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``Q(s, a)`` of the given actions: ``[B]`` from Q-values ``[B, A]`` and indices ``[B]``."""
    return q.gather(1, actions[:, None])[:, 0]


def cql_penalty(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """CQL(H)'s penalty over discrete actions (Kumar et al., 2020, eq. 4, the log-sum-exp
    exact): ``mean_s [log sum_a exp Q(s, a) - Q(s, a_data)]`` for Q-values ``[B, A]``."""
    return conservative_penalty(q.T, 0.0, action_values(q, actions))


def copy_due(algo: Algorithm, targets: Sequence[tuple[nn.Module, nn.Module]], moment: str) -> None:
    """Copy each ``(target, network)`` pair if this is a ``target_update_every``-th update and
    ``moment`` is the configured ``target_copy``. Every update calls it at ``before_update``
    (first thing in ``train_step``), then :func:`step_and_copy` at the two others."""
    cfg = algo.config
    assert isinstance(cfg, DiscreteConfig)
    if cfg.target_copy == moment and algo.num_updates % cfg.target_update_every == 0:
        for target, net in targets:
            hard_update(target, net)


def step_and_copy(
    algo: Algorithm,
    steps: Sequence[tuple[torch.optim.Optimizer | Sequence[torch.optim.Optimizer], torch.Tensor]],
    targets: Sequence[tuple[nn.Module, nn.Module]],
) -> None:
    """One update's optimiser steps (each ``(optimiser or optimisers, loss)``:
    :meth:`Algorithm.optimize`), and, at every
    ``target_update_every``-th update, the copy of each ``(target, network)`` pair, before or
    after the steps as ``algo.config.target_copy`` says (:func:`copy_due`)."""
    copy_due(algo, targets, "before_step")
    for optim, loss in steps:
        algo.optimize(optim, loss)
    copy_due(algo, targets, "after_step")
