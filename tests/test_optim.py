"""FlatAdam: torch.optim.Adam's numbers and state layout, with torch's step hooks."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import offrl.optim as optim_mod
from offrl.optim import FlatAdam


def _run(opt_cls: type[torch.optim.Optimizer], steps: int, **kwargs: float) -> torch.Tensor:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50))
    target = torch.randn(50)
    opt = opt_cls([p], lr=1e-2, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        ((p - target) ** 3).abs().sum().backward()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "python-loop"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_flat_adam_matches_torch_adam(
    fused: bool, weight_decay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optim_mod, "_HAS_FUSED", fused and optim_mod._HAS_FUSED)
    ours = _run(FlatAdam, 20, weight_decay=weight_decay)
    ref = _run(torch.optim.Adam, 20, weight_decay=weight_decay)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    # ...and it moved: 20 steps of lr 1e-2 are not a no-op.
    assert not torch.allclose(ours, _run(FlatAdam, 0))


def test_flat_adam_state_dict_loads_into_torch_adam() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = FlatAdam([p], lr=1e-3)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(state["state"][0]["step"]) == 1.0
    torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1e-3).load_state_dict(state)


def test_flat_adam_runs_step_hooks() -> None:
    """``step`` skips torch's wrapper only while no hook is registered."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = FlatAdam([p], lr=1e-3)
    calls: list[str] = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    p.grad = torch.ones(3)
    opt.step()
    assert calls == ["pre", "post"]
    pre.remove()
    post.remove()
    glob = register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global"))
    try:
        opt.step()
    finally:
        glob.remove()
    opt.step()
    assert calls == ["pre", "post", "global"]
    assert float(opt.state[p]["step"]) == 3.0
