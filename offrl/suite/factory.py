"""The D4RL protocol, rebuilt: behaviour policies from offrl's own SAC, datasets made locally.

D4RL (Fu et al., 2020) made its MuJoCo datasets from one SAC training run per environment:

* ``random`` -- a randomly initialised policy;
* ``medium`` -- a policy stopped at about a third of the expert's return;
* ``expert`` -- the fully trained policy;
* ``medium-replay`` -- the replay buffer of the run up to the medium policy;
* ``medium-expert`` -- medium and expert concatenated;
* ``full-replay`` -- the whole training replay buffer.

offrl does the same on any continuous Gymnasium environment. ``offrl online`` trains SAC and
saves policy snapshots; :func:`export_pack` turns a run into a *behaviour pack* (policy weights
only, loadable without executing code); :func:`build_level` rolls a level out: 1M transitions
by default (2M for medium-expert), sampled actions of the stochastic policy, episodes cut at the
environment's time limit (1000 steps for MuJoCo) stored as *timeouts* and true ends as
*terminals*. Builds are deterministic for a seed.

The replay levels come from the run's real replay buffer when a run directory is at hand. A
pack carries the real buffer's first ``medium_step`` transitions (``medium-replay``: a few MB,
stored without the next observations that the following row already holds); the whole buffer
(``full-replay``, hundreds of MB) it does not carry, so that level is *reconstructed* from the
policy snapshots saved every ``snapshot_every`` steps: the first ``start_steps`` transitions with
uniform random actions, then each stretch of steps with the snapshot that was current at its
start. That matches the real buffer's mixture of policies only up to the snapshot interval, and
it under-represents a policy that improves fast within one interval.

Packs for HalfCheetah, Hopper and Walker2d ship with offrl (``offrl/data/behaviour/``) and give
the registered names ``halfcheetah-medium-v0`` etc. -- offrl's datasets, not D4RL's ``-v2``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl._version import __version__
from offrl.data.dataset import Dataset, DatasetError
from offrl.data.loaders import load_d4rl_hdf5, save_d4rl_hdf5
from offrl.data.registry import data_dir, report_progress
from offrl.data.replay import ReplayBuffer
from offrl.envs import register_envs
from offrl.nn import TanhGaussianPolicy
from offrl.suite.rollout import Policy, one_thread, rollout_dataset
from offrl.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "LEVELS",
    "MUJOCO_DATASETS",
    "PACK_DIR",
    "BehaviourPack",
    "export_pack",
    "load_pack",
    "build_level",
    "make_mujoco",
    "pack_replay",
    "sac_policy",
    "unpack_replay",
]

LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
PACK_FORMAT = "offrl-behaviour-v1"
PACK_DIR = Path(__file__).resolve().parent.parent / "data" / "behaviour"
"""Where the shipped behaviour packs live (``offrl/data/behaviour/``: package data, next to the
other dataset assets; this module, which uses them, sits in the layer above ``offrl.data``)."""

# The shipped packs: (short name, dataset version) -> (environment id, pack file in PACK_DIR).
# A retrained pack gets a new version, so that a dataset name never changes its contents.
_PACKS = {
    ("halfcheetah", "v0"): ("HalfCheetah-v5", "halfcheetah-v5.pt"),
    ("hopper", "v0"): ("Hopper-v5", "hopper-v5.pt"),
    ("walker2d", "v0"): ("Walker2d-v5", "walker2d-v5.pt"),
    ("halfcheetah", "v1"): ("HalfCheetah-v5", "halfcheetah-v5-tqc.pt"),  # TQC (issue 25)
    ("walker2d", "v1"): ("Walker2d-v5", "walker2d-v5-s1.pt"),  # retrained, seed 1 (issue 25)
}
MUJOCO_DATASETS: dict[str, tuple[str, str, str]] = {
    f"{short}-{level}-{version}": (env_id, pack, level)
    for (short, version), (env_id, pack) in _PACKS.items()
    for level in LEVELS
}
"""``name -> (env_id, pack file, level)`` of offrl's MuJoCo datasets."""


@dataclass
class BehaviourPack:
    """Behaviour policies of one SAC run: the levels and the snapshot sequence (see module)."""

    env_id: str
    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...]
    seed: int
    train_steps: int
    start_steps: int
    medium_step: int
    expert_step: int
    snapshots: dict[int, dict[str, torch.Tensor]]
    """Actor weights by training step (``medium_step`` and ``expert_step`` among them)."""
    returns: dict[str, dict[str, float]]
    """Measured return (mean, std over episodes) of each policy level's stochastic rollouts."""
    info: dict[str, Any]
    """Versions and provenance."""
    replay: dict[str, torch.Tensor] | None = None
    """The run's real replay buffer up to ``medium_step`` (see :func:`pack_replay`), or ``None``."""

    def actor(self, step: int | None) -> TanhGaussianPolicy:
        """The actor at training ``step`` (``None``: a randomly initialised one, seeded)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = TanhGaussianPolicy(self.obs_dim, self.action_dim, self.hidden)
        if step is not None:
            state = {k: v.float() for k, v in self.snapshots[step].items()}
            net.load_state_dict(state)
        return net.requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (``torch.load(weights_only=True)`` reads it)."""
        return {
            "format": PACK_FORMAT,
            "env_id": self.env_id,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden": list(self.hidden),
            "seed": self.seed,
            "train_steps": self.train_steps,
            "start_steps": self.start_steps,
            "medium_step": self.medium_step,
            "expert_step": self.expert_step,
            "snapshots": {str(k): v for k, v in self.snapshots.items()},
            "returns": self.returns,
            "info": json.dumps(self.info),
            **({"replay": self.replay} if self.replay is not None else {}),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> BehaviourPack:
        """The pack saved by :meth:`state_dict`; rejects anything else by its ``format``."""
        if state.get("format") != PACK_FORMAT:
            raise DatasetError(f"format: not an offrl behaviour pack ({state.get('format')!r})")
        return cls(
            env_id=state["env_id"],
            obs_dim=int(state["obs_dim"]),
            action_dim=int(state["action_dim"]),
            hidden=tuple(state["hidden"]),
            seed=int(state["seed"]),
            train_steps=int(state["train_steps"]),
            start_steps=int(state["start_steps"]),
            medium_step=int(state["medium_step"]),
            expert_step=int(state["expert_step"]),
            snapshots={int(k): v for k, v in state["snapshots"].items()},
            returns=state["returns"],
            info=json.loads(state["info"]),
            replay=state.get("replay"),
        )

    def save(self, path: str | Path) -> Path:
        """Write the pack atomically."""
        save_checkpoint(path, self.state_dict())
        return Path(path)


def load_pack(path: str | Path) -> BehaviourPack:
    """Read a behaviour pack (no code execution)."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"path: no behaviour pack at {p}")
    return BehaviourPack.from_state_dict(torch.load(p, map_location="cpu", weights_only=True))


def sac_policy(
    actor: TanhGaussianPolicy | None, low: np.ndarray, high: np.ndarray, seed: int
) -> Policy:
    """A rollout policy: sampled actions of ``actor`` (``None``: uniform random), seeded."""
    gen = torch.Generator().manual_seed(seed)

    def act(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if actor is None:
            return rng.uniform(low, high, size=(obs.shape[0], low.size)).astype(np.float32)
        with torch.no_grad():
            a, _ = actor.sample(torch.as_tensor(obs, dtype=torch.float32), generator=gen)
        return (low + (a.numpy() + 1.0) * 0.5 * (high - low)).astype(np.float32)

    return act


def _bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    register_envs()  # offrl's MinAtar / Atari ids
    env = gym.make(env_id)
    space = env.action_space
    env.close()
    assert isinstance(space, gym.spaces.Box)
    return space.low.astype(np.float32), space.high.astype(np.float32)


def _measure(
    env_id: str, actor: TanhGaussianPolicy | None, episodes: int, seed: int
) -> dict[str, float]:
    low, high = _bounds(env_id)
    ds = rollout_dataset(env_id, sac_policy(actor, low, high, seed), episodes, seed, episodes)
    rets = ds.episode_returns()
    return {"return_mean": float(rets.mean()), "return_std": float(rets.std())}


def pack_replay(ds: Dataset) -> dict[str, torch.Tensor]:
    """Compact tensors of an episode-contiguous dataset: every row's observation, action,
    reward and flags, and a next observation only where the following row does not hold it."""
    n = len(ds.rewards)
    follows = np.zeros(n, dtype=bool)
    follows[:-1] = np.all(ds.next_observations[:-1] == ds.observations[1:], axis=-1)
    own = ~follows  # rows whose successor is not the next row (episode ends, the last row)
    return {
        "observations": torch.from_numpy(ds.observations.astype(np.float32)),
        "actions": torch.from_numpy(ds.actions.astype(np.float32)),
        "rewards": torch.from_numpy(ds.rewards.astype(np.float32)),
        "terminals": torch.from_numpy(ds.terminals.astype(bool)),
        "timeouts": torch.from_numpy(ds.timeouts.astype(bool)),
        "own_next": torch.from_numpy(own),
        "next_observations": torch.from_numpy(ds.next_observations[own].astype(np.float32)),
    }


def unpack_replay(replay: dict[str, torch.Tensor], first: int, env_id: str) -> Dataset:
    """The first ``first`` rows of a :func:`pack_replay` buffer as a dataset (exactly)."""
    obs = replay["observations"].numpy()
    own = replay["own_next"].numpy()
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[own] = replay["next_observations"].numpy()
    return Dataset.from_arrays(
        observations=obs[:first],
        actions=replay["actions"].numpy()[:first],
        rewards=replay["rewards"].numpy()[:first],
        next_observations=next_obs[:first],
        terminals=replay["terminals"].numpy()[:first],
        timeouts=replay["timeouts"].numpy()[:first],
        env_id=env_id,
    )


def export_pack(
    run_dir: str | Path,
    medium_fraction: float = 1.0 / 3.0,
    expert_step: int | None = None,
    episodes: int = 10,
    half: bool = True,
) -> BehaviourPack:
    """Make a behaviour pack from an ``offrl online`` run directory (its ``snapshots/``).

    The expert is the best-evaluated snapshot of the last fifth of training (SAC's evaluation
    return is noisy from one snapshot to the next) unless ``expert_step`` names one; the medium
    policy is the snapshot whose evaluation return is closest to ``medium_fraction`` of the
    expert's. Each level's stochastic return is then measured over ``episodes`` episodes.
    Replay snapshots are stored in float16 (``half``) to keep the pack small; the medium and
    expert weights stay float32. The run's real buffer up to the medium policy goes in too
    (``medium-replay`` then needs no reconstruction), when the run's checkpoint holds one.
    """
    run = Path(run_dir)
    config = json.loads((run / "config.json").read_text())
    online = config["online"]
    snaps: dict[int, dict[str, Any]] = {}
    for f in sorted((run / "snapshots").glob("step_*.pt")):
        s = torch.load(f, map_location="cpu", weights_only=True)
        snaps[int(s["step"])] = s
    if not snaps:
        raise DatasetError(f"snapshots: {run} has no policy snapshots")
    steps = sorted(snaps)
    last = steps[-1]
    if expert_step is None:
        late = [s for s in steps if s >= 0.8 * last]
        expert_step = max(late, key=lambda s: snaps[s]["return_mean"])
    expert_return = snaps[expert_step]["return_mean"]
    random_return = _measure(online["env_id"], None, episodes, 0)["return_mean"]
    goal = random_return + medium_fraction * (expert_return - random_return)
    earlier = [s for s in steps if s < expert_step]
    if not earlier:
        raise DatasetError(
            f"snapshots: {run} has no snapshot before the expert's (step {expert_step})"
        )
    medium_step = min(earlier, key=lambda s: abs(snaps[s]["return_mean"] - goal))
    any_snap = snaps[last]
    spec = any_snap["spec"]
    weights = {
        s: {
            k: (v.half() if half and s not in (medium_step, expert_step) else v.float())
            for k, v in snaps[s]["actor"].items()
        }
        for s in steps
    }
    pack = BehaviourPack(
        env_id=online["env_id"],
        obs_dim=int(np.prod(spec["obs_shape"])),
        action_dim=int(spec["action_dim"]),
        hidden=tuple(any_snap["config"]["hidden"]),
        seed=int(online["seed"]),
        train_steps=last,
        start_steps=int(online["start_steps"]),
        medium_step=medium_step,
        expert_step=expert_step,
        snapshots=weights,
        returns={},
        info={
            "algo": online["algo"],  # the online learner (SAC, or TQC for a stronger expert)
            "algo_config": online.get("algo_config", {}),  # its options set away from the defaults
            "threads": online.get("threads"),
            "offrl_version": __version__,
            "gymnasium_version": gym.__version__,
            "mujoco_version": _mujoco_version(),
            "snapshot_every": int(online["snapshot_every"]),
            "eval_returns": {str(s): snaps[s]["return_mean"] for s in steps},
            "medium_fraction": medium_fraction,
        },
    )
    checkpoint = run / "checkpoints" / "latest.pt"
    if checkpoint.exists():
        pack.replay = pack_replay(_run_buffer(pack, run, medium_step))
    with one_thread():
        pack.returns = {
            "random": _measure(pack.env_id, pack.actor(None), episodes, 1),
            "medium": _measure(pack.env_id, pack.actor(medium_step), episodes, 2),
            "expert": _measure(pack.env_id, pack.actor(expert_step), episodes, 3),
        }
    return pack


def _mujoco_version() -> str | None:
    try:
        import mujoco

        return str(mujoco.__version__)
    except ImportError:  # pragma: no cover - gymnasium[mujoco] is a dependency
        return None


def _replay(
    pack: BehaviourPack, until: int, seed: int, num_envs: int, run_dir: Path | None
) -> Dataset:
    """The replay buffer's first ``until`` transitions: real if a run is given or the pack
    carries them, else rebuilt from the snapshots."""
    if run_dir is not None:
        return _run_buffer(pack, run_dir, until)
    if pack.replay is not None and len(pack.replay["rewards"]) >= until:
        return unpack_replay(pack.replay, until, pack.env_id)
    low, high = _bounds(pack.env_id)
    bounds = [0, min(pack.start_steps, until)]
    bounds += [s for s in sorted(pack.snapshots) if bounds[-1] < s < until] + [until]
    parts = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if b <= a:
            continue
        actor: TanhGaussianPolicy | None = None  # SAC's uniform warm-up actions
        if a >= pack.start_steps:
            # The newest snapshot by then; before the first one, the run's initial actor (the
            # seeded initialisation that pack.actor(None) reproduces).
            earlier = [s for s in pack.snapshots if s <= a]
            actor = pack.actor(max(earlier) if earlier else None)
        policy = sac_policy(actor, low, high, seed + 7919 * k)
        parts.append(
            rollout_dataset(
                pack.env_id, policy, seed=seed + 7919 * k, num_envs=num_envs, transitions=b - a
            )
        )
    return Dataset.concatenate(parts)


def _run_buffer(pack: BehaviourPack, run_dir: Path, until: int) -> Dataset:
    """The first ``until`` transitions of the real replay buffer of the run in ``run_dir``."""
    buf_state = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["buffer"]
    low, high = _bounds(pack.env_id)
    buf = ReplayBuffer(int(buf_state["size"]), (pack.obs_dim,), pack.action_dim, low, high)
    buf.load_state_dict(buf_state)
    return buf.to_dataset(first=until, env_id=pack.env_id)


def build_level(
    pack: BehaviourPack,
    level: str,
    transitions: int = 1_000_000,
    seed: int = 0,
    num_envs: int = 10,
    run_dir: str | Path | None = None,
) -> Dataset:
    """Build one level of the protocol from ``pack`` (see the module docstring).

    ``transitions`` sizes random / medium / expert (medium-expert is both, twice as large); the
    replay levels hold as many transitions as the run collected up to the medium policy (or in
    all). ``run_dir`` takes the replay levels from the run's real buffer.
    """
    if level not in LEVELS:
        raise DatasetError(f"level: unknown level {level!r}; choose from {LEVELS}")
    with one_thread():
        return _build_level(pack, level, transitions, seed, num_envs, run_dir)


SHARD_MIN = 100_000
"""Policy levels of at least this many transitions are collected in two independent parts, one
process each: MuJoCo simulation is single-threaded, and two cores build a dataset twice as fast.
The split depends only on the size, never on the machine, so a build stays the same everywhere."""


def _rollout_part(job: tuple[Any, ...]) -> Dataset:
    """One part of a policy level (in a worker process, or the whole level in this one)."""
    env_id, state, dims, seed, num_envs, transitions = job
    torch.set_num_threads(1)
    actor = TanhGaussianPolicy(*dims)
    actor.load_state_dict(state)
    actor.requires_grad_(False)
    low, high = _bounds(env_id)
    return rollout_dataset(
        env_id,
        sac_policy(actor, low, high, seed),
        seed=seed,
        num_envs=num_envs,
        transitions=transitions,
    )


def _rollout_level(
    pack: BehaviourPack, step: int | None, transitions: int, seed: int, num_envs: int
) -> Dataset:
    """``transitions`` sampled-action transitions of the policy at ``step`` (None: random init)."""
    actor = pack.actor(step)
    state = {k: v.clone() for k, v in actor.state_dict().items()}
    dims = (pack.obs_dim, pack.action_dim, pack.hidden)
    if transitions < SHARD_MIN:
        return _rollout_part((pack.env_id, state, dims, seed, num_envs, transitions))
    import multiprocessing

    half = transitions // 2
    jobs = [
        (pack.env_id, state, dims, 2 * seed + i, max(1, num_envs // 2), n)
        for i, n in enumerate((transitions - half, half))
    ]
    # spawn: a forked child of a process that already ran torch's thread pool can deadlock.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.map(_rollout_part, jobs)
    return Dataset.concatenate(parts)


def _build_level(
    pack: BehaviourPack,
    level: str,
    transitions: int,
    seed: int,
    num_envs: int,
    run_dir: str | Path | None,
) -> Dataset:
    policy_step = {"random": None, "medium": pack.medium_step, "expert": pack.expert_step}
    run = Path(run_dir) if run_dir is not None else None
    if level in policy_step:
        ds = _rollout_level(pack, policy_step[level], transitions, seed, num_envs)
    elif level == "medium-expert":
        ds = Dataset.concatenate(
            [
                build_level(pack, "medium", transitions, seed, num_envs),
                build_level(pack, "expert", transitions, seed + 1, num_envs),
            ]
        )
    else:
        until = pack.medium_step if level == "medium-replay" else pack.train_steps
        ds = _replay(pack, until, seed, num_envs, run)
    rets = ds.episode_returns()
    ds.env_id = pack.env_id
    ds.metadata = {
        "provenance": "offrl dataset factory (D4RL protocol; not D4RL data)",
        "env_id": pack.env_id,
        "level": level,
        "behaviour": pack.info.get("algo", "sac"),
        "behaviour_steps": {
            "random": 0,
            "medium": pack.medium_step,
            "expert": pack.expert_step,
            "medium-replay": pack.medium_step,
            "full-replay": pack.train_steps,
            "medium-expert": [pack.medium_step, pack.expert_step],
        }[level],
        "behaviour_return_mean": float(rets.mean()),
        "behaviour_return_std": float(rets.std()),
        "replay": _replay_kind(pack, level, run),
        "seed": seed,
        "pack_seed": pack.seed,
        "offrl_version": __version__,
        "gymnasium_version": gym.__version__,
        "mujoco_version": _mujoco_version(),
    }
    return ds


def _replay_kind(pack: BehaviourPack, level: str, run: Path | None) -> str | None:
    if "replay" not in level:
        return None
    if run is not None or (level == "medium-replay" and pack.replay is not None):
        return "real"
    return "reconstructed"


def make_mujoco(
    name: str, rebuild: bool = False, progress: Callable[[str], None] | None = None
) -> Dataset:
    """Load a registered MuJoCo dataset (e.g. ``hopper-medium-v0``), building it on first use
    from the shipped behaviour pack and caching it as D4RL-layout HDF5 under :func:`data_dir`."""
    if name not in MUJOCO_DATASETS:
        raise KeyError(f"unknown MuJoCo dataset {name!r}; available: {sorted(MUJOCO_DATASETS)}")
    env_id, pack_file, level = MUJOCO_DATASETS[name]
    path = data_dir() / "datasets" / f"{name}.hdf5"
    if path.exists() and not rebuild:
        return load_d4rl_hdf5(path)
    pack_path = PACK_DIR / pack_file
    if not pack_path.exists():
        raise DatasetError(
            f"dataset: the behaviour pack for {env_id} ({pack_file}) is not shipped with this "
            "version of offrl; train one with `offrl online` and build with `offrl dataset make`"
        )
    message = f"building {name} from {pack_file} (first use; cached in {path})"
    if progress is not None:
        progress(message)
    else:
        report_progress(message)
    ds = build_level(load_pack(pack_path), level)
    ds.metadata["name"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_d4rl_hdf5(ds, path)
    return ds
