"""d3rlpy 2.8.1's discrete Q-learning updates, update by update, for a comparison with offrl's
``qrdqn``, ``discrete_cql`` and ``discrete_bcq``.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_discrete.py --out d.pt

Three runs over d3rlpy's default ``VectorEncoder`` (256 x 2, ReLU), one critic, Adam lr 1e-4,
gamma 0.99, target copied every 3 updates (so that copies happen within the run), the first two
on its ``QRQFunctionFactory`` (``n_quantiles`` 32, midpoint taus, Huber threshold 1):

* ``qrdqn`` -- ``DoubleDQNConfig``: the next action chosen by the online network, valued by
  the target's quantiles;
* ``cql`` -- ``DiscreteCQLConfig`` (a ``DoubleDQN``) with ``alpha`` 4: the quantile loss plus
  ``alpha * mean(logsumexp_a Q(s, a) - Q(s, a_data))``;
* ``bcq`` -- ``DiscreteBCQConfig`` on the default (mean) Q-function: the Huber TD loss with the
  next action chosen among those the imitator allows (``action_flexibility`` 0.3), plus the
  imitator's negative log-likelihood and ``beta`` 0.5 times its mean squared logit; the
  imitator is one linear layer on the Q-function's encoder (``share_encoder``);
* ``bc`` / ``bc_beta`` -- ``DiscreteBCConfig`` with ``beta`` 0 (the negative log-likelihood
  alone) and with its default ``beta`` 0.5 (plus 0.5 times the mean squared log-probability).

Batches: 8-dimensional standard-normal observations, 4 actions drawn uniformly, standard-normal
rewards, 10 % terminals; float32 and float64 (``same_update_kit.run_all``).
``tests/test_d3rlpy_same_discrete.py`` replays the runs in offrl.
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import torch
from d3rlpy.models import QRQFunctionFactory
from d3rlpy.torch_utility import TorchMiniBatch
from same_update_kit import linear, mlp, parser, run_all, to_dtype

OBS_DIM, ACTIONS, QUANTILES, TARGET_EVERY, ALPHA, LR = 8, 4, 32, 3, 4.0, 1e-4
FLEXIBILITY, BETA = 0.3, 0.5
KINDS = ("qrdqn", "cql", "bcq", "bc", "bc_beta")


def discrete_batches(updates: int, seed: int, size: int) -> list[dict[str, torch.Tensor]]:
    """``updates`` seeded batches (drawn in float32, then in torch's default dtype)."""
    g = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    out = []
    for _ in range(updates):
        b = {
            "obs": torch.randn(size, OBS_DIM, generator=g).to(dtype),
            "actions": torch.randint(ACTIONS, (size,), generator=g),
            "rewards": torch.randn(size, generator=g).to(dtype),
            "next_obs": torch.randn(size, OBS_DIM, generator=g).to(dtype),
            "dones": (torch.rand(size, generator=g) < 0.1).to(dtype),
        }
        out.append(b)
    return out


def minibatch(b: dict[str, torch.Tensor]) -> TorchMiniBatch:
    n = b["obs"].shape[0]
    return TorchMiniBatch(
        observations=b["obs"],
        actions=b["actions"][:, None],
        rewards=b["rewards"][:, None],
        next_observations=b["next_obs"],
        next_actions=torch.zeros(n, 1, dtype=torch.int64),  # unused
        returns_to_go=torch.zeros(n, 1),  # unused
        terminals=b["dones"][:, None],
        intervals=torch.ones(n, 1),  # gamma ** intervals: gamma
        device="cpu",
    )


def run(args: Any, batches: list[dict[str, torch.Tensor]], kind: str) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    common: dict[str, Any] = dict(
        learning_rate=LR, batch_size=args.batch_size, gamma=0.99, n_critics=1,
        target_update_interval=TARGET_EVERY,
    )  # fmt: skip
    qr = QRQFunctionFactory(n_quantiles=QUANTILES)
    if kind == "cql":
        config: Any = d3rlpy.algos.DiscreteCQLConfig(alpha=ALPHA, q_func_factory=qr, **common)
    elif kind.startswith("bc_") or kind == "bc":
        beta = BETA if kind == "bc_beta" else 0.0
        config = d3rlpy.algos.DiscreteBCConfig(
            learning_rate=LR, batch_size=args.batch_size, beta=beta
        )
    elif kind == "bcq":
        config = d3rlpy.algos.DiscreteBCQConfig(
            action_flexibility=FLEXIBILITY, beta=BETA, share_encoder=True, **common
        )
    else:
        config = d3rlpy.algos.DoubleDQNConfig(q_func_factory=qr, **common)
    algo = config.create(device="cpu")
    algo.create_impl((OBS_DIM,), ACTIONS)
    impl = algo.impl
    to_dtype(impl)

    def weights() -> dict[str, Any]:
        if kind.startswith("bc_") or kind == "bc":
            return {"policy": mlp(impl._modules.imitator)}
        q = impl._modules.q_funcs[0]
        w = {"q": mlp(q), "q_target": mlp(impl._modules.targ_q_funcs[0])}
        if kind == "bcq":
            assert impl._modules.imitator._encoder is q._encoder  # one shared encoder
            w["imitator"] = linear(impl._modules.imitator._fc)
        return w

    out: dict[str, Any] = {"initial": weights()}
    metrics = [impl.inner_update(minibatch(b), k) for k, b in enumerate(batches)]
    out["final"] = weights()
    out["metrics"] = metrics
    return out


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, batch_size=32).parse_args(argv)
    run_all(
        args,
        lambda batches: {kind: run(args, batches, kind) for kind in KINDS},
        discrete_batches,
        settings={
            "obs_dim": OBS_DIM, "actions": ACTIONS, "quantiles": QUANTILES,
            "target_every": TARGET_EVERY, "alpha": ALPHA, "lr": LR,
            "flexibility": FLEXIBILITY, "beta": BETA,
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
