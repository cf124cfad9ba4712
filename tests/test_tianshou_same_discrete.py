"""offrl's discrete updates equal Tianshou 2.0.1's (the second seed's library), from the same
weights and batches: QR-DQN, discrete CQL (QR-DQN plus the log-sum-exp penalty), discrete
BCQ, and discrete CRR and CRR + CQL with Tianshou's two recipe choices switched in
(``weight_gradient``: the actor loss also trains the critic; ``target_copy="before_update"``),
each over several updates with target-network copies in between
(``benchmarks/tianshou/same_update_discrete.py`` runs Tianshou's own ``_preprocess_batch`` and
``_update_with_batch`` in its virtual environment).

For CRR, Tianshou's update is compared with one line mended (``--paired``): as shipped, its
actor loss weights every sample's log-likelihood by every sample's weight (a ``[B, 1] * [B]``
broadcast), so the loss is the batch's mean weight times its mean log-likelihood, behaviour
cloning scaled by one number; ``test_tianshou_crr_weights_the_batch_not_the_sample`` pins that
down."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from offrl.algos import EnvSpec, get_algorithm
from offrl.data.sampler import Batch

ROOT = Path(__file__).resolve().parents[1]
TIANSHOU_PYTHON = ROOT / "benchmarks" / ".venv-tianshou" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not TIANSHOU_PYTHON.exists(), reason="run benchmarks/tianshou/setup.sh first"
)
OBS, ACTIONS, B, UPDATES = 6, 4, 16, 7
CASES = {
    "qrdqn": ("qrdqn", {"num_quantiles": 8}),
    "cql": ("discrete_cql", {"num_quantiles": 8, "min_q_weight": 3.0}),
    "bcq": ("discrete_bcq", {"threshold": 0.3, "imitation_penalty": 0.01}),
    "crr": ("discrete_crr", {"weight_gradient": True, "target_copy": "before_update"}),
    "crr_cql": (
        "discrete_crr_cql",
        {"weight_gradient": True, "target_copy": "before_update", "min_q_weight": 3.0},
    ),
}


def _layers(algo: Any) -> list[list[torch.Tensor]]:
    """The Q-network's layers as ``nn.Linear`` ``[W [out, in], b [out]]``."""
    net = algo.critic if hasattr(algo, "critic") else algo.q
    return _linear(net)


def _linear(net: Any) -> list[list[torch.Tensor]]:
    """An offrl network's ``EnsembleMLP`` (one member) as ``nn.Linear`` ``[W, b]`` layers."""
    return [[w[0].detach().t().clone(), b[0, 0].detach().clone()] for w, b in net.net.layers()]


def _batches(seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(UPDATES):
        out.append(
            {
                "obs": torch.randn(B, OBS, generator=g),
                "act": torch.randint(ACTIONS, (B,), generator=g),
                "rew": torch.randn(B, generator=g),
                "obs_next": torch.randn(B, OBS, generator=g),
                "terminated": (torch.rand(B, generator=g) < 0.2),
            }
        )
    return out


def _tianshou(inp: dict[str, Any], tmp_path: Path, *flags: str) -> dict[str, Any]:
    """Tianshou's updates on ``inp`` (run in its virtual environment)."""
    torch.save(inp, tmp_path / "inp.pt")
    script = ROOT / "benchmarks" / "tianshou" / "same_update_discrete.py"
    cmd = [str(TIANSHOU_PYTHON), str(script), "--inp", str(tmp_path / "inp.pt"), *flags]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return torch.load(tmp_path / "out.pt", weights_only=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_offrl_update_equals_tianshou(case: str, tmp_path: Path) -> None:
    name, options = CASES[case]
    cls = get_algorithm(name)
    config = cls.config_class.from_dict(
        {"hidden": (32, 32), "lr": 1e-3, "target_update_every": 3, "gamma": 0.9, **options}
    )
    algo = cls(EnvSpec((OBS,), ACTIONS, discrete=True), config, seed=0)
    layers = _layers(algo)
    batches = _batches(seed=1)
    inp: dict[str, Any] = {
        "algo": case,
        "layers": layers,
        "num_actions": ACTIONS,
        "num_quantiles": options.get("num_quantiles", 1),
        "gamma": 0.9,
        "lr": 1e-3,
        "target_update_freq": 3,
        "min_q_weight": options.get("min_q_weight", 0.0),
        "threshold": options.get("threshold", 0.0),
        "imitation_penalty": options.get("imitation_penalty", 0.0),
        "batches": batches,
    }
    if case == "bcq":  # offrl's last layer holds both heads: A Q-values, then A logits
        w, b = layers[-1]
        inp["layers"] = [*layers[:-1], [w[:ACTIONS], b[:ACTIONS]]]
        inp["imitator"] = [w[ACTIONS:], b[ACTIONS:]]
    flags = []
    if case.startswith("crr"):  # Tianshou's algorithm name: CRR, with CQL's weight or 0
        inp.update(algo="crr", actor=_linear(algo.actor), beta=1.0, ratio_upper_bound=20.0)
        flags = ["--paired"]
    theirs = _tianshou(inp, tmp_path, *flags)

    ours = []
    for b in batches:
        batch = Batch(b["obs"], b["act"], b["rew"], b["obs_next"], b["terminated"].float())
        metrics = algo.update(batch)
        if case == "bcq":  # Tianshou reports the sum of BCQ's three terms
            total = metrics["imitation_loss"] + 0.01 * metrics["logits_penalty"]
            ours.append(metrics["q_loss"] + total)
        elif case == "cql":
            ours.append(metrics["qr_loss"] + 3.0 * metrics["cql_loss"])
        elif case.startswith("crr"):  # Tianshou reports actor + critic + weight * CQL's
            cql = 3.0 * metrics["cql_loss"] if case == "crr_cql" else 0.0
            ours.append(metrics["critic_loss"] + metrics["actor_loss"] + cql)
        else:
            ours.append(metrics["qr_loss"])
    np.testing.assert_allclose(ours, theirs["losses"].numpy(), rtol=1e-5)
    final = _layers(algo)
    if case == "bcq":
        w, b = final[-1]
        final = [*final[:-1], [w[:ACTIONS], b[:ACTIONS]]]
        np.testing.assert_allclose(w[ACTIONS:], theirs["imitator"][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b[ACTIONS:], theirs["imitator"][1], rtol=1e-4, atol=1e-6)
    if case.startswith("crr"):
        final += _linear(algo.actor)
        theirs["layers"] += theirs["actor"]
    for (w, b), (tw, tb) in zip(final, theirs["layers"], strict=True):
        np.testing.assert_allclose(w, tw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, tb, rtol=1e-4, atol=1e-6)


def test_tianshou_crr_weights_the_batch_not_the_sample(tmp_path: Path) -> None:
    """Tianshou 2.0.1's ``DiscreteCRR`` as shipped: its first actor loss is
    ``mean_i f(A_i) * mean_j -log pi(a_j | s_j)``, not CRR's ``mean_i f(A_i) (-log pi(a_i | s_i))``
    (the critic's part is the same as offrl's)."""
    cls = get_algorithm("discrete_crr")
    config = cls.config_class.from_dict(
        {"hidden": (32, 32), "lr": 1e-3, "target_update_every": 3, "gamma": 0.9}
    )
    algo = cls(EnvSpec((OBS,), ACTIONS, discrete=True), config, seed=0)
    batches = _batches(seed=1)
    inp = {
        "algo": "crr", "layers": _layers(algo), "actor": _linear(algo.actor),
        "num_actions": ACTIONS, "num_quantiles": 1, "gamma": 0.9, "lr": 1e-3,
        "target_update_freq": 3, "min_q_weight": 0.0, "beta": 1.0, "ratio_upper_bound": 20.0,
        "batches": batches[:1],
    }  # fmt: skip
    theirs = float(_tianshou(inp, tmp_path)["losses"][0])
    b = batches[0]
    with torch.no_grad():
        q = algo.critic(b["obs"])
        logits = algo.actor.logits(b["obs"])
        nll = torch.nn.functional.cross_entropy(logits, b["act"], reduction="none")
        advantage = q.gather(1, b["act"][:, None])[:, 0] - (logits.softmax(-1) * q).sum(-1)
        weights = advantage.exp().clamp(max=20.0)
    metrics = algo.update(
        Batch(b["obs"], b["act"], b["rew"], b["obs_next"], b["terminated"].float())
    )
    critic = metrics["critic_loss"]
    assert metrics["actor_loss"] == pytest.approx(float((weights * nll).mean()), rel=1e-6)
    assert theirs == pytest.approx(critic + float(weights.mean() * nll.mean()), rel=1e-6)
    assert abs(theirs - critic - metrics["actor_loss"]) > 1e-4  # the two differ here
