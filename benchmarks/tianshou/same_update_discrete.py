"""Tianshou 2.0.1's discrete offline updates from given weights and batches (run in
benchmarks/.venv-tianshou): ``tests/test_tianshou_same_discrete.py`` replays the same updates in
offrl and compares.

Input (``--inp``, a ``torch.save`` file of plain tensors and numbers): ``algo`` (``qrdqn``,
``cql``, ``bcq`` or ``crr``), the Q-network's ``layers`` (``[W [out, in], b [out]]`` of each
``nn.Linear``, Tianshou's ``Net`` order: hidden layers, then the ``A * N`` outputs), for BCQ
the imitation head's ``imitator`` layer, for CRR the policy's ``actor`` layers (the Q-network
is its critic), ``num_actions``, ``num_quantiles``, ``gamma``, ``lr``, ``target_update_freq``,
``min_q_weight`` / ``threshold`` / ``imitation_penalty`` / ``beta`` / ``ratio_upper_bound``,
and ``batches``: dicts of ``obs``, ``act``, ``rew``, ``obs_next``, ``terminated``.

``--paired`` (CRR only) mends one line of Tianshou's ``DiscreteCRR``: its actor loss multiplies
the weights ``[B, 1]`` by the log-likelihoods ``[B]``, which broadcasts to ``[B, B]``, so every
sample's log-likelihood is weighted by every sample's weight (the loss is the batch's mean
weight times its mean log-likelihood). With the flag, ``log_prob`` returns ``[B, 1]`` and each
sample gets its own weight, as in the paper.

Each batch becomes rows of one Tianshou ``ReplayBuffer``; each update is Tianshou's own
``_preprocess_batch`` (one-step returns from its target network) then
``_update_with_batch`` on exactly those rows. Output (``--out``): the losses and the final
layers (and CRR's final ``actor`` layers).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import QRDQN
from tianshou.algorithm.imitation import discrete_crr
from tianshou.algorithm.imitation.discrete_bcq import DiscreteBCQ, DiscreteBCQPolicy
from tianshou.algorithm.imitation.discrete_cql import DiscreteCQL
from tianshou.algorithm.imitation.discrete_crr import DiscreteCRR
from tianshou.algorithm.modelfree.qrdqn import QRDQNPolicy
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.net.common import Net
from torch import nn


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def weights(module: nn.Module) -> list[list[torch.Tensor]]:
    """``[W, b]`` of each of ``module``'s ``nn.Linear`` layers, copied."""
    return [[lin.weight.detach().clone(), lin.bias.detach().clone()] for lin in linears(module)]


def load(module: nn.Module, layers: list) -> None:
    with torch.no_grad():
        for lin, (w, b) in zip(linears(module), layers, strict=True):
            lin.weight.copy_(w)
            lin.bias.copy_(b)


class Imitator(nn.Module):
    """BCQ's imitation head on the Q-network's torso (offrl's shared-encoder layout): the
    torso's features, then one linear layer to the action logits."""

    def __init__(self, torso: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.torso, self.head = torso, head

    def forward(self, obs, state=None, info=None):  # noqa: ANN001, ANN201
        x = torch.as_tensor(obs, dtype=torch.float32)
        return self.head(self.torso(x)), state


class PairedCategorical(torch.distributions.Categorical):
    """``log_prob`` as ``[B, 1]``: each sample's log-likelihood meets its own weight."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value).unsqueeze(-1)


class Critic(nn.Module):
    """CRR's critic: a ``Net``'s Q-values alone (``Net`` returns ``(output, state)``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs):  # noqa: ANN001, ANN201
        return self.net(obs)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inp", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--paired", action="store_true", help="CRR: each sample's own weight")
    args = parser.parse_args()
    if args.paired:
        discrete_crr.Categorical = PairedCategorical
    torch.set_num_threads(1)
    inp = torch.load(args.inp, weights_only=True)
    algo_name = inp["algo"]
    batches = inp["batches"]
    obs_dim = int(batches[0]["obs"].shape[1])
    num_actions, n = int(inp["num_actions"]), int(inp["num_quantiles"])
    hidden = [int(w.shape[0]) for w, _ in inp["layers"][:-1]]
    space = gym.spaces.Discrete(num_actions)
    optim = AdamOptimizerFactory(lr=float(inp["lr"]))
    if algo_name == "bcq":
        net = Net(state_shape=obs_dim, action_shape=num_actions, hidden_sizes=hidden)
        load(net, inp["layers"])
        torso = nn.Sequential(*list(net.model.model)[:-1])  # the hidden layers, shared
        head = nn.Linear(hidden[-1], num_actions)
        load(head, [inp["imitator"]])
        imitator = Imitator(torso, head)
        policy = DiscreteBCQPolicy(
            model=net,
            imitator=imitator,
            action_space=space,
            target_update_freq=int(inp["target_update_freq"]),
            unlikely_action_threshold=float(inp["threshold"]),
        )
        algo = DiscreteBCQ(
            policy=policy,
            optim=optim,
            gamma=float(inp["gamma"]),
            target_update_freq=int(inp["target_update_freq"]),
            imitation_logits_penalty=float(inp["imitation_penalty"]),
        )
    elif algo_name == "crr":
        net = Net(state_shape=obs_dim, action_shape=num_actions, hidden_sizes=hidden)
        load(net, inp["layers"])
        actor = Net(state_shape=obs_dim, action_shape=num_actions, hidden_sizes=hidden)
        load(actor, inp["actor"])
        algo = DiscreteCRR(
            policy=DiscreteActorPolicy(actor=actor, action_space=space),
            critic=Critic(net),
            optim=optim,
            gamma=float(inp["gamma"]),
            policy_improvement_mode="exp",
            ratio_upper_bound=float(inp["ratio_upper_bound"]),
            beta=float(inp["beta"]),
            min_q_weight=float(inp["min_q_weight"]),
            target_update_freq=int(inp["target_update_freq"]),
        )
    else:
        net = Net(state_shape=obs_dim, action_shape=num_actions, hidden_sizes=hidden, num_atoms=n)
        load(net, inp["layers"])
        qpolicy = QRDQNPolicy(model=net, action_space=space)
        common = dict(
            policy=qpolicy,
            optim=optim,
            gamma=float(inp["gamma"]),
            num_quantiles=n,
            target_update_freq=int(inp["target_update_freq"]),
        )
        if algo_name == "cql":
            algo = DiscreteCQL(min_q_weight=float(inp["min_q_weight"]), **common)
        else:
            algo = QRDQN(**common)
    rows = {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}
    size = len(rows["rew"])
    terminated = rows["terminated"].astype(bool)
    buffer = ReplayBuffer.from_data(
        obs=rows["obs"],
        act=rows["act"],
        rew=rows["rew"],
        terminated=terminated,
        truncated=np.zeros(size, dtype=bool),
        done=terminated,
        obs_next=rows["obs_next"],
    )
    algo.train()
    losses, start = [], 0
    for b in batches:
        idx = np.arange(start, start + len(b["rew"]))
        start += len(idx)
        batch = algo._preprocess_batch(buffer[idx], buffer, idx)
        stats = algo._update_with_batch(batch)
        losses.append(float(stats.loss))
    out = {"losses": torch.tensor(losses), "layers": weights(net)}
    if algo_name == "crr":
        out["actor"] = weights(actor)
    if algo_name == "bcq":
        out["imitator"] = [head.weight.detach().clone(), head.bias.detach().clone()]
    torch.save(out, args.out)


if __name__ == "__main__":
    main()
