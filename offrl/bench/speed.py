"""Per-update speed at the standard size, with its FLOP count and the machine's matmul bound.

The standard size is the one the TD3+BC and IQL papers use on MuJoCo: observation dim 17 and
action dim 6 (HalfCheetah / Walker2d), two hidden layers of 256, batch 256. A timed update
includes drawing its batch from a 100k-transition in-memory dataset, exactly as in training.

* ``updates_per_s`` -- median over ``repeats`` timed windows after a warm-up.
* ``flops_per_update`` -- counted with ``torch.utils.flop_counter``'s per-op formulas (see
  :class:`FlopCounter`) over a whole
  update cycle (e.g. TD3+BC's two steps, one with an actor update), divided by its length.
* ``matmul_gflops`` -- this machine's measured fp32 rate on a 256x256x256 matmul at the same
  thread count; ``bound_updates_per_s = matmul_gflops / flops_per_update`` is the speed if every
  FLOP ran at that rate and nothing else cost time; ``bound_fraction`` is how close we are.

Discrete algorithms are timed on frames: ``obs_shape=(4, 84, 84)`` (the Nature DQN's input,
batch 32 by their defaults) or MinAtar's ``(4, 10, 10)``, with ``num_actions`` actions, drawn
from a dataset of random ``uint8`` frames (:func:`synthetic_frames`); their bound is the same
matmul rate (convolutions run below it).

With ``device="cuda"`` the algorithm, its data and the reference matmul live on the GPU. Each
update still ends in a host sync (``Algorithm.update`` returns its metrics as Python floats, as
training logs them), so the rate is that of training, not of queued kernels.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from offrl.algos import get_algorithm
from offrl.algos.base import EnvSpec
from offrl.data.dataset import Dataset
from offrl.data.sampler import Batch, TensorSampler
from offrl.train.graphs import GraphedUpdate

__all__ = [
    "FlopCounter",
    "SpeedResult",
    "measure_speed",
    "measure_sampling",
    "matmul_gflops",
    "synthetic_dataset",
    "synthetic_frames",
]


class FlopCounter(TorchDispatchMode):
    """FLOPs of every op run under it, by ``torch.utils.flop_counter``'s formulas.

    ``FlopCounterMode`` does the same and also attributes FLOPs to modules, through autograd
    hooks on module inputs that ``torch.autograd.grad`` cannot run (an update that
    differentiates a gradient, EDAC's, fails under it); this counter tracks no modules.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


@dataclass
class SpeedResult:
    """One algorithm's speed figures."""

    algo: str
    updates_per_s: float
    repeats: list[float]
    flops_per_update: float
    matmul_gflops: float
    bound_updates_per_s: float
    bound_fraction: float
    threads: int
    batch_size: int
    hidden: list[int]
    obs_dim: int
    act_dim: int
    """Continuous: the action dimension; discrete: the number of actions."""
    torch_version: str
    cpu: str
    device: str = "cpu"
    """``cpu``, or the GPU's name (e.g. ``cuda: NVIDIA H100 80GB HBM3``)."""
    obs_shape: list[int] | None = None
    """Discrete algorithms: the frames' ``[C, H, W]``."""

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (``offrl bench speed --json``)."""
        return asdict(self)


def synthetic_dataset(
    n: int = 100_000, obs_dim: int = 17, act_dim: int = 6, seed: int = 0
) -> Dataset:
    """Seeded random transitions (episodes of 1000 steps ending in timeouts)."""
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[999::1000] = True
    return Dataset(
        observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=timeouts,
    )


def synthetic_frames(
    n: int, obs_shape: tuple[int, ...], num_actions: int, seed: int = 0
) -> Dataset:
    """Seeded random ``uint8`` frames (a tenth of the pixels lit, as in MinAtar and Atari's
    sparse screens) with integer actions; episodes of 1000 steps ending in timeouts."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((n + 1, *obs_shape)) < 0.1).astype(np.uint8) * 255
    timeouts = np.zeros(n, dtype=bool)
    timeouts[999::1000] = True
    return Dataset(
        observations=frames[:-1],
        actions=rng.integers(0, num_actions, n),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=frames[1:],
        terminals=np.zeros(n, dtype=bool),
        timeouts=timeouts,
    )


def matmul_gflops(size: int = 256, seconds: float = 1.0, device: str = "cpu") -> float:
    """Measured fp32 GFLOP/s of a ``size^3`` matmul at the current thread count (best window)."""
    dev = torch.device(device)
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    out = torch.empty(size, size, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(20):
        torch.mm(a, b, out=out)
    sync()
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(50):
            torch.mm(a, b, out=out)
        sync()
        best = max(best, 50 * 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def updates_per_second(
    update: Callable[[Batch], object], sampler: TensorSampler, seconds: float, chunk: int = 10
) -> float:
    """Rate of ``update(sampler.sample())`` over a window of about ``seconds``, at least one
    ``chunk`` of calls; the clock is read once per ``chunk``, not per update."""
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        for _ in range(chunk):
            update(sampler.sample())
        n += chunk
    return n / (time.perf_counter() - t0)


def measure_speed(
    algo_name: str,
    threads: int = 2,
    seconds: float = 10.0,
    repeats: int = 3,
    warmup: int = 50,
    obs_dim: int = 17,
    act_dim: int = 6,
    algo_config: dict[str, Any] | None = None,
    device: str = "cpu",
    cuda_graphs: bool = False,
    obs_shape: tuple[int, ...] | None = None,
    num_actions: int = 6,
) -> SpeedResult:
    """Time ``algo_name``'s updates (with sampling) at the standard size on ``device``
    (replayed from CUDA graphs with ``cuda_graphs``: :mod:`offrl.train.graphs`).

    ``obs_shape`` (``C, H, W``) times a discrete algorithm on frames with ``num_actions``
    actions (a discrete-only algorithm defaults to the Nature DQN's ``(4, 84, 84)``)."""
    torch.set_num_threads(threads)
    cls = get_algorithm(algo_name)
    cfg = cls.config_class.from_dict(algo_config or {})
    if obs_shape is None and "continuous" not in cls.action_kinds:
        obs_shape = (4, 84, 84)
    if obs_shape is not None:
        spec = EnvSpec(tuple(obs_shape), num_actions, discrete=True)
        obs_dim, act_dim = int(np.prod(obs_shape)), num_actions
        # 10k rows of frames (0.6 GB at 84 x 84 x 4, the next frames included).
        raw = synthetic_frames(10_000, tuple(obs_shape), num_actions)
    else:
        spec = EnvSpec((obs_dim,), act_dim)
        raw = synthetic_dataset(obs_dim=obs_dim, act_dim=act_dim)
    algo = cls(spec, cfg, seed=0, device=device)
    # The trainer's data hooks (%BC keeps its best episodes, AWR computes its returns).
    data = algo.prepare_data(raw)
    algo.attach_data(data)
    sampler = TensorSampler(data, cfg.batch_size, device=device, **algo.sampler_options())
    update = GraphedUpdate(algo).update if cuda_graphs else algo.update
    for _ in range(warmup):
        update(sampler.sample())
    cycle = algo.update_cycle()  # e.g. TD3+BC's delayed actor: average over its period
    with FlopCounter() as counter:
        for _ in range(cycle):
            algo.update(sampler.sample())
    flops = counter.total / cycle
    rates = [updates_per_second(update, sampler, seconds / repeats) for _ in range(repeats)]
    gflops = matmul_gflops(device=device)
    bound = gflops * 1e9 / flops if flops else float("inf")
    ups = statistics.median(rates)
    return SpeedResult(
        algo=algo_name,
        updates_per_s=ups,
        repeats=rates,
        flops_per_update=flops,
        matmul_gflops=gflops,
        bound_updates_per_s=bound,
        bound_fraction=ups / bound if flops else 0.0,
        threads=threads,
        batch_size=cfg.batch_size,
        hidden=list(cfg.hidden),
        obs_dim=obs_dim,
        act_dim=act_dim,
        torch_version=torch.__version__,
        cpu=_cpu_name(),
        device=(
            f"cuda: {torch.cuda.get_device_name(algo.device)}"
            if algo.device.type == "cuda"
            else algo.device.type
        ),
        obs_shape=list(obs_shape) if obs_shape is not None else None,
    )


def measure_sampling(
    n: int = 1_000_000, batch_size: int = 256, draws: int = 2000, threads: int = 2
) -> dict[str, float]:
    """Microseconds per batch drawn by :class:`TensorSampler` from ``n`` in-memory transitions.

    Returns the median over 5 windows of ``draws / 5`` batches each.
    """
    torch.set_num_threads(threads)
    sampler = TensorSampler(synthetic_dataset(n=n), batch_size)
    for _ in range(100):
        sampler.sample()
    per = draws // 5
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per):
            sampler.sample()
        times.append((time.perf_counter() - t0) / per * 1e6)
    return {
        "transitions": float(n),
        "batch_size": float(batch_size),
        "us_per_batch": statistics.median(times),
        "us_per_batch_min": min(times),
    }
