"""TD3+BC's update with hand-derived gradients: the arithmetic of :mod:`offrl.algos.td3bc`'s
losses without an autograd graph.

:class:`~offrl.algos.td3bc.TD3BC` reads like the paper: a critic loss and an actor loss, each
differentiated by autograd. Per update that costs ~0.6-0.9 ms of graph building, loss nodes and
backward-engine bookkeeping on a 2-core CPU (of ~5 ms). This module computes the same
gradients by the chain rule (1.12-1.17x the updates per second of the autograd path,
``benchmarks/eager_floor.py``), with the networks' own batched kernels
(:meth:`~offrl.nn.mlp.EnsembleMLP.forward_cached` / ``backward_cached``), and hands them to the
algorithm's own optimisers, so the optimiser state, checkpoints and metrics are those of the
autograd path. ``tests/test_td3bc_fused.py`` checks that both paths give the same weights.

TD3BC takes this path when ``config.fused`` is on (the default) and neither loss is overridden:
a subclass that changes a loss gets autograd, and its change is honoured. ``td_target`` is
shared (it has no gradient), so overriding it keeps the fast path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from offrl.algos.base import soft_update
from offrl.data.sampler import Batch

if TYPE_CHECKING:
    from offrl.algos.td3bc import TD3BC


@torch.no_grad()
def fused_train_step(algo: TD3BC, batch: Batch) -> dict[str, torch.Tensor | float]:
    """One TD3+BC update of ``algo`` (critic, then every ``policy_freq`` updates the actor and
    the targets), the same as ``TD3BC.train_step`` on the autograd path."""
    cfg = algo.config
    actor, critic = algo.actor.net, algo.critic.net
    b, obs_dim = batch.obs.shape
    target = algo.td_target(batch)  # [B]

    # Critic: L = sum_i mean_b (Q_i - y)^2, so dL/dQ_i = 2 (Q_i - y) / B.
    q, cache = critic.forward_cached(torch.cat([batch.obs, batch.actions], dim=-1))  # [N, B, 1]
    diff = q - target.view(1, b, 1)
    info: dict[str, torch.Tensor | float] = {
        "critic_loss": diff.square().sum() / b,
        "q_mean": q.mean(),
    }
    critic.backward_cached(diff.mul_(2.0 / b), cache)
    algo.critic_optim.step()

    if (algo.num_updates + 1) % cfg.policy_freq:
        return info
    # Actor: L = -lambda mean_b Q1(s, pi) + mean (pi - a)^2, lambda = alpha / mean |Q1| (a
    # constant), pi = tanh(u); the critic's weights are constants here.
    u, actor_cache = actor.forward_cached(batch.obs)  # [1, B, A]
    pi = u[0].tanh()
    q1, q1_cache = critic.forward_cached(torch.cat([batch.obs, pi], dim=-1), members=0)
    lmbda = cfg.alpha / q1.abs().mean()
    err = pi - batch.actions
    bc = err.square().mean()
    info["actor_loss"] = bc - lmbda * q1.mean()
    info["bc_loss"] = bc
    dq1 = torch.full_like(q1, -1.0 / b).mul_(lmbda)  # dL/dQ1
    dx = critic.backward_cached(dq1, q1_cache, members=0, weights=False, inputs=True)
    assert dx is not None
    dpi = err.mul_(2.0 / err.numel()).add_(dx[0, :, obs_dim:])  # BC term + dQ1/da path
    du = dpi.mul_(1.0 - pi * pi)  # through tanh
    actor.backward_cached(du.unsqueeze(0), actor_cache)
    algo.actor_optim.step()
    soft_update(algo.actor_target, algo.actor, cfg.tau)
    soft_update(algo.critic_target, algo.critic, cfg.tau)
    return info
