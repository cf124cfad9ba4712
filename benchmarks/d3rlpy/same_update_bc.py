"""d3rlpy 2.8.1's BC, update by update, for a comparison with offrl's BC.

Run in d3rlpy's virtual environment (``bash benchmarks/d3rlpy/setup.sh``)::

    benchmarks/.venv-d3rlpy/bin/python benchmarks/d3rlpy/same_update_bc.py --out bc.pt

``BCConfig`` at offrl's settings (the TD3+BC paper's BC baseline): lr 3e-4 (d3rlpy's default is
1e-3), batch 256 (d3rlpy's: 100), hidden 256 x 2, one run per ``policy_type``:

* ``deterministic`` -- ``a = tanh(MLP(s))``, the mean squared error to the dataset's action;
* ``stochastic`` -- d3rlpy's ``NormalPolicy`` (mean ``tanh(mu(s))``, log-std a second head
  clamped to [-4, 15]), trained on the mean squared error of one reparameterised sample
  ``clip(mu + sigma * eps, -1, 1)`` to the dataset's action (not on its likelihood), ``eps`` the
  update's one ``torch.randn [B, act]``, from torch's global generator seeded with
  ``noise_seed + k`` before update ``k``. The run also records, at the initial and the final
  weights, the policy's Gaussian on the first batch (``loc``, ``scale``) and the negative
  log-likelihood of that batch's actions under it (``nll``, d3rlpy's ``log_prob``).

Everything is done in float32 and again in float64 (``same_update_kit.run_all``).
``tests/test_d3rlpy_same_bc.py`` replays both runs in offrl.
"""

from __future__ import annotations

from typing import Any

import d3rlpy
import torch
from d3rlpy.models.torch import build_gaussian_distribution
from same_update_kit import (
    ACT_DIM,
    OBS_DIM,
    minibatch,
    mlp,
    normal_policy,
    parser,
    run_all,
    to_dtype,
)


@torch.no_grad()
def gaussian(policy: Any, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stochastic policy's distribution at ``b``'s observations, and its NLL of the actions."""
    dist = build_gaussian_distribution(policy(b["obs"]))
    nll = -dist.log_prob(b["actions"]).mean()  # log_prob sums over action dimensions
    return {"loc": dist.mean.clone(), "scale": dist.std.clone(), "nll": nll}


def run(args: Any, batches: list[dict[str, torch.Tensor]], policy_type: str) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    algo = d3rlpy.algos.BCConfig(
        learning_rate=3e-4, batch_size=args.batch_size, policy_type=policy_type
    ).create(device="cpu")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    impl = algo.impl
    to_dtype(impl)
    policy = impl._modules.imitator
    layers = mlp if policy_type == "deterministic" else normal_policy
    out: dict[str, Any] = {"initial": {"actor": layers(policy)}}
    if policy_type == "stochastic":
        out["initial"]["gaussian"] = gaussian(policy, batches[0])
    metrics = []
    for k, b in enumerate(batches):
        torch.manual_seed(args.noise_seed + k)
        metrics.append(impl.inner_update(minibatch(b), k))
    out["final"] = {"actor": layers(policy)}
    if policy_type == "stochastic":
        out["final"]["gaussian"] = gaussian(policy, batches[0])
    out["metrics"] = metrics
    return out


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    kinds = ("deterministic", "stochastic")
    run_all(args, lambda batches: {kind: run(args, batches, kind) for kind in kinds})


if __name__ == "__main__":
    main()
