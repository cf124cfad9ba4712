"""The one interface every offrl algorithm implements, and the registry that names them.

An algorithm is a config dataclass plus a class with

* ``update(batch) -> dict[str, float]`` -- one gradient step on a :class:`~offrl.data.Batch`;
* optionally ``prepare_data(dataset)`` (choose the transitions to train on, before observation
  statistics) and ``attach_data(dataset)`` (see the preprocessed training data whose rows
  ``Batch.rows`` names) -- hooks for algorithms that need the dataset as a whole;
* ``act(obs) -> np.ndarray`` -- deterministic actions for raw environment observations;
* optionally what the training loops ask of it, each declared here with a default:
  ``AlgoConfig.reward_mode`` (the reward transform it expects), ``AlgoConfig.for_run(steps)``
  (options that follow the run's length), ``update_cycle()`` (period of its update branches),
  ``graph_cycle()`` (CUDA-graph replay), and for online training ``explore(obs)`` and
  ``snapshot_policy()``;
* ``state_dict()`` / ``load_state_dict()`` -- the whole state (networks, optimisers, RNG,
  preprocessing), made only of tensors and plain Python values so that checkpoints load with
  ``torch.load(weights_only=True)``, without executing code.

The trainer, evaluation, checkpoints, CLI and tests use only this interface. Subclasses build
their networks in :meth:`Algorithm.build`; every ``nn.Module``, optimiser and tensor-valued
attribute they set is saved automatically.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from offrl.config import check_options, declared_options
from offrl.data.dataset import Dataset
from offrl.data.normalization import ObsNormalizer
from offrl.data.sampler import Batch
from offrl.errors import IncompatibleDataError
from offrl.optim import FlatAdam
from offrl.rng import restore_generator
from offrl.runtime import tune_allocator

__all__ = [
    "AlgoConfig",
    "Algorithm",
    "EnvSpec",
    "register",
    "get_algorithm",
    "list_algorithms",
    "make_optimizer",
    "soft_update",
    "hard_update",
    "deployed_action",
    "task_name",
]


@dataclass
class AlgoConfig:
    """Hyperparameters shared by every algorithm (subclasses add their own)."""

    option_docs: ClassVar[dict[str, tuple[str, str]]] = {}
    """``{option: (default as written in the source, docstring)}``, in field order, the
    inherited ones included; ``help()`` on a config class lists them under "Options"."""

    batch_size: int = 256
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of every network."""
    activation: str = "relu"
    """Hidden-layer activation of the policy and value networks: ``relu``, ``tanh``, ``elu``,
    ``silu`` (``swish``), ``gelu`` or ``leaky_relu`` (ReLU runs a fused kernel; the others run
    through autograd)."""
    actor_layer_norm: bool = False
    """LayerNorm in every hidden layer of the policy (CORL's ReBRAC ``actor_ln``; off)."""
    critic_layer_norm: bool = False
    """LayerNorm in every hidden layer of the Q and value networks (ReBRAC, LB-SAC, SAC-RND)."""
    gamma: float = 0.99
    """Discount factor."""
    reward_mode: str = "none"
    """The trainer's reward transform before ``reward_scale``/``reward_shift``: ``none``, or
    ``return_range`` (divide by the dataset's range of episode returns, times 1000: IQL's
    locomotion recipe). The trainer's ``--reward-mode`` overrides it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _document_options(cls)

    def __post_init__(self) -> None:
        # Every option's type and range (offrl.config.RANGES), with a message naming it.
        check_options(self)

    def actor_net(self) -> dict[str, Any]:
        """The options of the policy's layers (``activation``, ``actor_layer_norm``) as
        keyword arguments of :mod:`offrl.nn`'s policies."""
        return {"activation": self.activation, "layer_norm": self.actor_layer_norm}

    def critic_net(self) -> dict[str, Any]:
        """The options of the Q and value networks' layers (``activation``,
        ``critic_layer_norm``) as keyword arguments of :mod:`offrl.nn`'s critics."""
        return {"activation": self.activation, "layer_norm": self.critic_layer_norm}

    def for_run(self, steps: int) -> AlgoConfig:
        """This config resolved for a training run of ``steps`` updates.

        The trainer calls it before building the algorithm, so that options whose default is
        "the run's length" (IQL's cosine learning-rate schedule, ``max_steps=None``) take this
        run's length, and the resolved value is what ``config.json`` and checkpoints record.
        The default returns the config unchanged; an override returns a new config
        (``dataclasses.replace``) rather than changing this one.
        """
        del steps  # most algorithms' options do not depend on the run's length
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AlgoConfig:
        """Build from a dict, rejecting unknown keys and coercing lists back to tuples."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(known)}")
        coerced: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**coerced)


def _document_options(cls: type[AlgoConfig]) -> None:
    """Collect ``cls``'s option docs (a redefined field keeps its place, as in a dataclass) and
    append them to its docstring, so that ``help(TD3BCConfig)`` shows every option."""
    options: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):  # mix-ins of options too (BEAR's SupportConfig)
        if dataclasses.is_dataclass(klass):
            options.update(declared_options(klass))
    cls.option_docs = options
    if not options:
        return
    lines = ["Options (``--set KEY=VALUE`` on the command line):", ""]
    for name, (default, doc) in options.items():
        lines.append(f"{name} = {default}")
        lines.extend(textwrap.indent(textwrap.fill(doc, 88), "    ").splitlines() or ["    "])
    cls.__doc__ = (cls.__doc__ or cls.__name__).rstrip() + "\n\n" + "\n".join(lines)


_document_options(AlgoConfig)


@dataclass(frozen=True)
class EnvSpec:
    """What an algorithm needs to know about observations and actions."""

    obs_shape: tuple[int, ...]
    """Shape of one observation."""
    action_dim: int
    """Continuous: the action dimension. Discrete: the number of actions."""
    discrete: bool = False
    """Whether actions are discrete indices."""
    action_low: tuple[float, ...] | None = None
    """Lower bounds of a continuous action space (``None``: ``-1``)."""
    action_high: tuple[float, ...] | None = None
    """Upper bounds of a continuous action space (``None``: ``+1``)."""

    @property
    def obs_dim(self) -> int:
        """Flattened observation size."""
        return int(np.prod(self.obs_shape))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of a continuous action space as ``float32`` arrays (``-1`` / ``+1``
        where not given)."""
        low = self.action_low if self.action_low is not None else (-1.0,) * self.action_dim
        high = self.action_high if self.action_high is not None else (1.0,) * self.action_dim
        return np.asarray(low, np.float32), np.asarray(high, np.float32)

    def uniform_actions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniform random actions: indices ``[n]`` (discrete) or points of the action box
        ``[n, action_dim]`` (``float32``), drawn from ``rng``."""
        if self.discrete:
            return rng.integers(0, self.action_dim, size=n)
        low, high = self.bounds()
        return rng.uniform(low, high, size=(n, self.action_dim)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists), as stored in checkpoints."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnvSpec:
        """The inverse of :meth:`to_dict` (lists become tuples again)."""

        def tup(v: Any) -> Any:
            return tuple(v) if isinstance(v, list) else v

        return cls(**{k: tup(v) for k, v in values.items()})


C = TypeVar("C", bound=AlgoConfig)


class Component:
    """A part of an algorithm that owns networks and optimisers of its own, shared by
    algorithms that are siblings rather than one derived from the other (BEAR's support
    constraint, :mod:`offrl.algos.support`).

    An algorithm holds it as an attribute; its modules, optimisers and tensors are saved in the
    algorithm's checkpoints under their own attribute names, exactly as if the algorithm held
    them itself.
    """


class Algorithm(ABC):
    """Base class of every offline algorithm. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    """Registry name (set by :func:`register`)."""
    config_class: ClassVar[type[AlgoConfig]] = AlgoConfig
    """The algorithm's config dataclass."""

    action_kinds: ClassVar[tuple[str, ...]] = ("continuous",)
    """The action kinds the algorithm handles: ``"continuous"`` (a box) and/or
    ``"discrete"``."""
    observation_kinds: ClassVar[tuple[str, ...]] = ("vector",)
    """The observation kinds it handles: ``"vector"`` (``[obs_dim]``) and/or ``"image"``
    (``[C, H, W]`` frames)."""

    @classmethod
    def check_spec(cls, spec: EnvSpec) -> None:
        """Raise :class:`~offrl.errors.IncompatibleDataError` if the algorithm cannot handle
        ``spec``'s actions or observations (called when it is built, before any update)."""
        action = "discrete" if spec.discrete else "continuous"
        observation = "vector" if len(spec.obs_shape) == 1 else "image"
        name = cls.name or cls.__name__
        if action not in cls.action_kinds:
            raise IncompatibleDataError(
                f"actions: {name} handles {' and '.join(cls.action_kinds)} actions, and this "
                f"data's are {action} ({spec.action_dim} {'actions' if spec.discrete else 'dims'})"
            )
        if observation not in cls.observation_kinds:
            raise IncompatibleDataError(
                f"observations: {name} handles {' and '.join(cls.observation_kinds)} "
                f"observations, and this data's have shape {tuple(spec.obs_shape)}"
            )

    def __init__(
        self, spec: EnvSpec, config: AlgoConfig | None = None, seed: int = 0, device: str = "cpu"
    ) -> None:
        type(self).check_spec(spec)
        self.spec = spec
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}")
        self.seed = seed
        self.device = torch.device(device)
        if self.device.type == "cpu":
            tune_allocator()  # a third of a CPU update was page faults (see offrl.runtime)
        self.num_updates = 0
        # The algorithm's own generator: exploration noise etc. never touch the global RNG, so a
        # resumed run draws exactly what an uninterrupted one would.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.obs_mean = torch.zeros(spec.obs_shape, device=self.device)
        self.obs_std = torch.ones(spec.obs_shape, device=self.device)
        low, high = spec.bounds()
        self.action_low = torch.from_numpy(low).to(self.device)
        self.action_high = torch.from_numpy(high).to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # network initialisation is a function of the seed alone
            self.build()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def build(self) -> None:
        """Create networks and optimisers (called once, under a seeded RNG)."""

    @abstractmethod
    def train_step(self, batch: Batch) -> dict[str, torch.Tensor | float]:
        """One gradient update. Return scalar metrics (tensors are converted by :meth:`update`).

        Keys starting with ``_`` pass values between a class and its subclasses (e.g. CQL's
        per-critic penalty for its Lagrange step) and are not reported."""

    @abstractmethod
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action for *normalised* observations: ``[B, act_dim]`` in ``[-1, 1]``
        (discrete: ``[B]`` indices)."""

    def frozen_policy(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`policy` with its random numbers fixed: a function of the normalised
        observations alone, which a tracer (TorchScript, ONNX: :mod:`offrl.export`) can record.

        ``frozen_policy()(obs)`` equals ``policy(obs)`` at the generator's current state, for any
        batch. The default is :meth:`policy` itself. An algorithm whose policy draws from
        ``self.generator`` (BCQ, BEAR, UWAC: the best of sampled actions) overrides it: it draws
        those numbers now, in a shape that does not depend on the batch, and returns a function
        that holds them as constants.
        """
        return self.policy

    def graph_cycle(self) -> int | None:
        """Updates per cycle of :meth:`train_step`'s branches, if it can be replayed from CUDA
        graphs (:mod:`offrl.train.graphs`); ``None`` (the default) if it cannot.

        An algorithm may return a cycle length only if every update does the same device work
        given ``num_updates % cycle`` and the batch: no host syncs, no Python-side state that
        changes between updates (a learning-rate schedule, a periodic recomputation, a warm-up
        switch would be frozen into the graph), random draws from ``self.generator`` only.
        """
        return None

    def update_cycle(self) -> int:
        """Updates over which the cost of :meth:`train_step` repeats: the period of the
        branches it takes every few steps (TD3+BC: ``policy_freq``, its delayed actor update).
        Benchmarks average one update's cost (FLOPs) over this many updates. Rare periodic work
        (AWR's return recomputation every ``recompute_every`` updates) is not counted. Default:
        :meth:`graph_cycle`'s period where there is one, else 1 (every update does the same
        work)."""
        return self.graph_cycle() or 1

    @staticmethod
    def optimize(
        optim: torch.optim.Optimizer | Sequence[torch.optim.Optimizer], loss: torch.Tensor
    ) -> None:
        """One optimiser step on ``loss``: clear gradients, backpropagate, step. Given several
        optimisers, one backward pass serves them all (a loss whose gradient reaches more than
        one network's parameters; each optimiser then steps its own)."""
        optims = (optim,) if isinstance(optim, torch.optim.Optimizer) else tuple(optim)
        for o in optims:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in optims:
            o.step()

    # ------------------------------------------------------------------ data hooks
    needs_next_actions: ClassVar[bool] = False
    """Whether :meth:`train_step` reads ``Batch.next_actions`` (the dataset's action at
    ``next_obs``, ReBRAC's critic penalty): the trainer then asks its sampler to fill it."""

    finetune_mix: ClassVar[str] = "keep"
    """How ``offrl finetune`` mixes offline and online data for this algorithm unless told
    otherwise (:mod:`offrl.train.mixing`): ``keep`` (one pool, uniform: CORL's and d3rlpy's AWAC
    and IQL), ``ratio`` (a fixed share of each batch: Cal-QL), ``balanced`` (Balanced
    Replay's learned priorities)."""
    needs_returns_to_go: ClassVar[bool] = False
    """Whether :meth:`train_step` reads ``Batch.returns_to_go`` (Monte-Carlo returns, Cal-QL's
    calibration): the training loops then ask their samplers to fill it."""

    def sampler_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~offrl.data.TensorSampler` that fill the optional
        batch fields this algorithm reads (``next_actions``, ``returns_gamma``)."""
        return {
            "next_actions": self.needs_next_actions,
            "returns_gamma": self.config.gamma if self.needs_returns_to_go else None,
        }

    def prepare_data(self, dataset: Dataset) -> Dataset:
        """The transitions to train on, given the loaded dataset (default: all of them).

        The trainer calls this before it computes observation statistics and reward
        transforms, so they describe what is returned. An algorithm that learns from part of
        the data (%BC's best episodes) or relabels it overrides this.
        """
        return dataset

    def data_batch_size(self) -> int:
        """Rows the trainer's sampler draws from the dataset for each update: the config's
        ``batch_size`` (the default). A model-based algorithm (:mod:`offrl.algos.model_based`)
        draws fewer and fills the rest of its batch from model rollouts."""
        return self.config.batch_size

    def run_info(self) -> dict[str, Any]:
        """What the run's ``final.json`` records about the algorithm beyond its metrics, as plain
        values under ``"algo_info"`` (default: nothing). The model-based algorithms record their
        dynamics model: held-out error per member, elites, calibration, whether it was reused."""
        return {}

    def attach_data(self, dataset: Dataset) -> None:
        """Receive the preprocessed training data whose row numbers are ``Batch.rows``.

        Called by the trainer after preprocessing (and, on resume, before
        :meth:`load_state_dict`). An algorithm that keeps per-transition quantities of the
        whole dataset (AWR's TD(lambda) returns) overrides this. What it keeps must not be a
        tensor attribute: tensors are saved in checkpoints, and the data is not part of the
        state. The default ignores the data.
        """
        del dataset  # most algorithms need only their batches

    # ------------------------------------------------------------------ online hooks
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Exploratory (stochastic) actions for a batch of raw observations ``[n, *obs_shape]``,
        in the action space's bounds: how online training (:mod:`offrl.train.online`) collects
        data. Draw random numbers from ``self.generator`` only.

        The default raises :class:`NotImplementedError`: an algorithm that only learns offline
        cannot collect data. :meth:`can_explore` tells whether a class overrides this.
        """
        raise NotImplementedError(
            f"{self.name or type(self).__name__} cannot explore: online training needs an "
            "algorithm that implements Algorithm.explore() (e.g. sac)"
        )

    def explore_with(
        self, draw: Callable[[torch.Tensor], torch.Tensor], obs: np.ndarray
    ) -> np.ndarray:
        """What every :meth:`explore` does around its own draw: raw observations ``[n,
        *obs_shape]`` are normalised, ``draw`` maps them to unit-box actions, and those are
        clipped to ``[-1, 1]`` and mapped to the action space's bounds (NumPy, on the host):
        :meth:`act`'s arithmetic (:func:`deployed_action`) around another policy."""
        with torch.no_grad():
            return self._deploy(draw, self._obs_tensor(obs)).cpu().numpy()

    def finetune_progress(self, step: int, total: int) -> None:
        """Called by ``offrl finetune`` before the updates of online step ``step`` (1 to
        ``total``): an algorithm whose fine-tuning recipe changes over the online phase
        (ReBRAC's decaying behaviour-cloning terms) overrides this. What it sets must follow
        from ``step`` alone, so that a resumed run gets the same values. The default does
        nothing."""
        del step, total  # most algorithms fine-tune with their offline update unchanged

    @classmethod
    def can_explore(cls) -> bool:
        """Whether the class implements :meth:`explore` (online training checks this before it
        starts)."""
        return cls.explore is not Algorithm.explore

    def snapshot_policy(self) -> nn.Module | None:
        """The network whose weights a policy-only snapshot keeps, or ``None`` (the default)
        for no snapshots.

        Online training saves it every ``snapshot_every`` steps with the observation statistics
        and its evaluation; the dataset factory (``offrl dataset pack``) rebuilds SAC's
        ``TanhGaussianPolicy`` from those weights, which is what SAC returns here.
        """
        return None

    # ------------------------------------------------------------------ the interface
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on ``batch``; returns finite scalar metrics by name."""
        metrics = self.train_step(batch)
        self.num_updates += 1
        return {k: float(v) for k, v in metrics.items() if not k.startswith("_")}

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action(s) for raw observation(s) ``obs`` (one, or a batch).

        Observations are normalised with the stored statistics; continuous actions are mapped
        from ``[-1, 1]`` to the action space's bounds. ``uint8`` frames stay bytes (the image
        encoders scale them, as in training).
        """
        x = self._obs_tensor(obs)
        single = x.dim() == len(self.spec.obs_shape)
        out = self._deploy(self.policy, x.unsqueeze(0) if single else x).cpu().numpy()
        return out[0] if single else out

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        """Raw observations as a tensor on the algorithm's device: ``uint8`` frames stay bytes,
        anything else becomes ``float32``."""
        raw = np.asarray(obs)
        dtype = torch.uint8 if raw.dtype == np.uint8 else torch.float32
        return torch.as_tensor(raw, dtype=dtype, device=self.device)

    def _deploy(
        self, policy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """:func:`deployed_action` of ``policy`` with this algorithm's statistics and bounds."""
        return deployed_action(
            policy,
            x,
            self.obs_mean,
            self.obs_std,
            self.action_low,
            self.action_high,
            self.spec.discrete,
        )

    def set_normalizer(self, normalizer: ObsNormalizer) -> None:
        """Store observation statistics (applied by :meth:`act`, saved in checkpoints)."""
        self.obs_mean = torch.as_tensor(normalizer.mean, device=self.device).reshape(
            self.spec.obs_shape
        )
        self.obs_std = torch.as_tensor(normalizer.std, device=self.device).reshape(
            self.spec.obs_shape
        )

    def normalizer(self) -> ObsNormalizer:
        """The stored observation statistics."""
        return ObsNormalizer(self.obs_mean.cpu().numpy(), self.obs_std.cpu().numpy())

    # ------------------------------------------------------------------ state
    def _stateful(self) -> dict[str, tuple[Any, Any]]:
        """``{name: (owner, value)}`` for every module, optimiser, scheduler and tensor of the
        algorithm and of its :class:`Component` parts (saved under their own names)."""
        kinds = (
            nn.Module,
            torch.optim.Optimizer,
            torch.optim.lr_scheduler.LRScheduler,
            torch.Tensor,
        )
        found: dict[str, tuple[Any, Any]] = {}
        for owner in (self, *(v for v in vars(self).values() if isinstance(v, Component))):
            for key, value in vars(owner).items():
                if isinstance(value, kinds):
                    if key in found and found[key][1] is not value:
                        raise ValueError(f"two parts of {type(self).__name__} save {key!r}")
                    found[key] = (owner, value)
        return found

    def modules_by_name(self) -> dict[str, nn.Module]:
        """Every network of the algorithm and of its :class:`Component` parts, by attribute
        name (what the divergence guard checks, what checkpoints save)."""
        return {k: v for k, (_, v) in self._stateful().items() if isinstance(v, nn.Module)}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training or to act: tensors and plain values only."""
        state: dict[str, Any] = {
            "algo": self.name,
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "spec": self.spec.to_dict(),
            "seed": self.seed,
            "num_updates": self.num_updates,
            "generator": self.generator.get_state(),
        }
        for key, (_, value) in self._stateful().items():
            state[key] = value.state_dict() if not isinstance(value, torch.Tensor) else value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (networks, optimisers, RNG, statistics)."""
        state = migrate_state(state)
        if state.get("algo") != self.name:
            raise ValueError(f"checkpoint is for {state.get('algo')!r}, not {self.name!r}")
        self.num_updates = int(state["num_updates"])
        # Exact on the device type the checkpoint came from; re-seeded on another (offrl.rng).
        restore_generator(self.generator, state["generator"], self.seed, self.num_updates)
        for key, (owner, value) in self._stateful().items():
            if key not in state:
                raise KeyError(f"checkpoint lacks {key!r}")
            if isinstance(value, torch.Tensor):
                saved = state[key]
                if not isinstance(saved, torch.Tensor) or saved.shape != value.shape:
                    got = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved)
                    raise ValueError(
                        f"checkpoint entry {key!r}: expected a tensor of shape "
                        f"{tuple(value.shape)}, got {got}"
                    )
                setattr(owner, key, saved.to(self.device, value.dtype))
            else:
                value.load_state_dict(state[key])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str = "cpu") -> Algorithm:
        """Rebuild the right algorithm from a state dict via the registry.

        A checkpoint of an earlier format is migrated where that is exact (format 1, offrl
        before the composable core: the same network layout; TD3+BC's removed ``fused`` option
        is dropped); a newer or unknown format is refused with a message naming both versions.
        """
        state = migrate_state(state)
        algo_cls = get_algorithm(state["algo"])
        config = algo_cls.config_class.from_dict(state["config"])
        algo = algo_cls(EnvSpec.from_dict(state["spec"]), config, seed=state["seed"], device=device)
        algo.load_state_dict(state)
        return algo


def deployed_action(
    policy: Callable[[torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    obs_mean: torch.Tensor,
    obs_std: torch.Tensor,
    action_low: torch.Tensor,
    action_high: torch.Tensor,
    discrete: bool,
) -> torch.Tensor:
    """Raw observations ``[B, *obs_shape]`` -> environment actions, by ``policy`` (a function of
    normalised observations with actions in ``[-1, 1]``): normalise, act, then clip and rescale
    to ``[action_low, action_high]`` (discrete: the indices, unchanged).

    :meth:`Algorithm.act` and the exported files of :mod:`offrl.export` both compute this.
    """
    # uint8 frames are not normalised (their statistics are 0 and 1; the encoders scale them).
    a = policy(obs if obs.dtype == torch.uint8 else (obs - obs_mean) / obs_std)
    if discrete:
        return a
    return action_low + (a.clamp(-1.0, 1.0) + 1.0) * 0.5 * (action_high - action_low)


# ---------------------------------------------------------------------- checkpoint format
CHECKPOINT_FORMAT = 2
"""The state-dict format this offrl writes: 1 = before the composable network core (no
``format`` key), 2 = since."""

# Options that earlier formats wrote and that no longer exist, by algorithm: dropped on load.
_REMOVED_OPTIONS: dict[str, tuple[str, ...]] = {"td3bc": ("fused",)}


def migrate_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` in :data:`CHECKPOINT_FORMAT`, or a ``ValueError`` naming the versions."""
    version = state.get("format", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT or version < 1:
        raise ValueError(
            f"checkpoint format {version!r} is not readable by this offrl (it reads formats 1 to "
            f"{CHECKPOINT_FORMAT}): load it with the offrl version that wrote it"
        )
    if version == CHECKPOINT_FORMAT:
        return state
    config = {
        k: v
        for k, v in state.get("config", {}).items()
        if k not in _REMOVED_OPTIONS.get(str(state.get("algo")), ())
    }
    return {**state, "config": config, "format": CHECKPOINT_FORMAT}


# ---------------------------------------------------------------------- helpers
def make_optimizer(params: Any, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Adam with the fused kernel and little per-step overhead (see :mod:`offrl.optim`)."""
    return FlatAdam(params, lr=lr, **kwargs)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source`` (one kernel per flat tensor)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """``target <- source``: copy every parameter (DQN's periodic target network update)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.copy_(s)


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Algorithm]] = {}
A = TypeVar("A", bound=type[Algorithm])


def register(name: str) -> Callable[[A], A]:
    """Class decorator: make an algorithm available by ``name`` (CLI, checkpoints, benches)."""

    def deco(cls: A) -> A:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"algorithm {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def task_name(name: str) -> str:
    """A dataset or D4RL task name as the per-task tables key it: ``"Hopper-Medium-Replay-v0"``
    -> ``"hopper-medium-replay"`` (lower case, the version dropped)."""
    return re.sub(r"-v\d+$", "", name.strip().lower())


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; available: {sorted(_REGISTRY)}") from None


def list_algorithms() -> list[str]:
    """Registered algorithm names, sorted."""
    return sorted(_REGISTRY)
