"""Export a trained policy into a file that runs without offrl: TorchScript or ONNX.

The exported file is the whole deployed policy, as :meth:`Algorithm.act
<offrl.algos.base.Algorithm.act>` computes it: it takes **raw** observations and returns actions
in the environment's bounds. Observation normalisation (the statistics stored in the
checkpoint), the policy network, the ``tanh`` squashing and clipping, and the rescaling from
``[-1, 1]`` to ``[low, high]`` all happen inside it. Discrete policies return action indices
(``int64``).

* ``torchscript`` (``.pt``): ``torch.jit.load(path)(obs)`` in any PyTorch (C++ ``libtorch``
  included), no offrl needed.
* ``onnx`` (``.onnx``): ``onnxruntime.InferenceSession(path).run(None, {"obs": obs})[0]``, with
  one input ``obs`` and one output ``action``.

Both take a batch, ``float32`` ``[B, *obs_shape]`` with any ``B`` (image policies, whose
observations are ``[C, H, W]`` frames: ``uint8``, the bytes the environment gives, scaled inside
as in training), and return ``[B, act_dim]`` (discrete: ``[B]``). Policies that act by
scoring sampled actions (BCQ, BEAR, UWAC) draw their
samples from the algorithm's generator, which ``act`` puts back after every call; the export
holds the draws of the checkpoint's generator state as constants
(:meth:`Algorithm.frozen_policy <offrl.algos.base.Algorithm.frozen_policy>`), so it acts exactly
as ``act`` does on that checkpoint.

Every export is checked before it is kept: the written file is loaded back (by ``onnxruntime``
for ONNX, when it is installed) and must give :meth:`Algorithm.act`'s actions on a batch of
observations to within ``atol`` (1e-5), or :class:`ExportError` says by how much it differs and
nothing is written. The file also carries its provenance: the algorithm, observation shape,
action bounds, environment and offrl version (TorchScript: the extra file ``offrl.json``; ONNX:
the model's metadata).

Example::

    from offrl.export import export_policy
    export_policy("runs/iql/checkpoints/latest.pt", "policy.onnx")   # format from the suffix

or ``offrl export runs/iql/checkpoints/latest.pt --format onnx --out policy.onnx``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from offrl._version import __version__
from offrl.algos.base import Algorithm, deployed_action
from offrl.errors import OfflineRLError
from offrl.io import atomic_write_bytes
from offrl.train.checkpoint import load_checkpoint, restore_algorithm

__all__ = [
    "FORMATS",
    "ExportError",
    "DeployedPolicy",
    "deployed_policy",
    "export_policy",
    "export_metadata",
    "format_for",
]

FORMATS = ("torchscript", "onnx")
"""The file formats :func:`export_policy` writes."""

_SUFFIXES = {".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
_SUFFIXES[".onnx"] = "onnx"

ONNX_OPSET = 17
"""The ONNX opset the exported graphs use (onnxruntime >= 1.12 runs it)."""


class ExportError(OfflineRLError):
    """A policy could not be exported, or its exported file does not act as the policy does."""


class DeployedPolicy(nn.Module):
    """Raw observations -> environment actions, as :meth:`Algorithm.act`, as one module.

    ``policy`` is a function of *normalised* observations returning actions in ``[-1, 1]``
    (discrete: indices), such as :meth:`Algorithm.frozen_policy`; the observation statistics
    and action bounds are buffers of this module, so a traced graph carries them.
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(
        self,
        policy: Callable[[torch.Tensor], torch.Tensor],
        obs_mean: torch.Tensor,
        obs_std: torch.Tensor,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        discrete: bool,
        frames: bool = False,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.discrete = discrete
        self.frames = frames
        self.register_buffer("obs_mean", obs_mean.detach().clone())
        self.register_buffer("obs_std", obs_std.detach().clone())
        self.register_buffer("action_low", action_low.detach().clone())
        self.register_buffer("action_high", action_high.detach().clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, *obs_shape]`` raw observations -> ``[B, act_dim]`` actions (discrete: ``[B]``)."""
        a = deployed_action(
            self.policy,
            obs.to(torch.uint8) if self.frames else obs.to(self.obs_mean.dtype),
            self.obs_mean,
            self.obs_std,
            self.action_low,
            self.action_high,
            self.discrete,
        )
        return a.to(torch.int64) if self.discrete else a


def deployed_policy(algo: Algorithm, frames: bool | None = None) -> DeployedPolicy:
    """A :class:`DeployedPolicy` of ``algo`` on the CPU that a tracer can record.

    ``frames``: take ``uint8`` frames (default: for ``[C, H, W]`` observations); ``False``
    takes ``float32`` as they are (frames already scaled by the user).

    It runs on a copy of ``algo`` (rebuilt from its state dict, so ``algo`` itself is not
    touched) whose weights do not require gradients: a traced graph holds them as constants.
    """
    state = algo.state_dict()
    copy = Algorithm.from_state_dict(_to_cpu(state), device="cpu")
    for module in _modules(copy):
        module.requires_grad_(False).eval()
        cache = getattr(module, "_view_cache", None)
        if isinstance(cache, dict):  # EnsembleMLP's views, made while the weights needed grads
            cache.clear()
    return DeployedPolicy(
        copy.frozen_policy(),
        copy.obs_mean,
        copy.obs_std,
        copy.action_low,
        copy.action_high,
        copy.spec.discrete,
        frames=_frames(copy) if frames is None else frames,
    ).eval()


def _frames(algo: Algorithm) -> bool:
    """Whether ``algo`` acts on ``[C, H, W]`` frames (exported with ``uint8`` input)."""
    return len(algo.spec.obs_shape) == 3


def export_metadata(algo: Algorithm, format: str, env_id: str | None = None) -> dict[str, Any]:
    """What an exported file says about itself (TorchScript's ``offrl.json``, ONNX metadata)."""
    spec = algo.spec
    return {
        "offrl_version": __version__,
        "format": format,
        "algo": algo.name,
        "env_id": env_id,
        "num_updates": algo.num_updates,
        "obs_shape": list(spec.obs_shape),
        "discrete": spec.discrete,
        "action_dim": spec.action_dim,
        "action_low": None if spec.discrete else algo.action_low.cpu().tolist(),
        "action_high": None if spec.discrete else algo.action_high.cpu().tolist(),
        "input": (
            "obs: uint8 [B, *obs_shape], frames as the environment gives them"
            if _frames(algo)
            else "obs: float32 [B, *obs_shape], raw (unnormalised) observations"
        ),
        "output": (
            "action: int64 [B], action indices"
            if spec.discrete
            else "action: float32 [B, action_dim], in [action_low, action_high]"
        ),
    }


def format_for(path: str | os.PathLike[str], format: str | None = None) -> str:
    """``format`` if given (checked), else the format of ``path``'s suffix (``.pt``/``.ts``:
    TorchScript, ``.onnx``: ONNX)."""
    if format is not None:
        if format not in FORMATS:
            raise ExportError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ExportError(
            f"format: cannot tell the format of {str(path)!r} from its suffix {suffix!r}; "
            f"give one of {', '.join(FORMATS)} (or name the file .pt or .onnx)"
        )
    return _SUFFIXES[suffix]


def export_policy(
    algo: Algorithm | str | os.PathLike[str],
    out: str | os.PathLike[str],
    format: str | None = None,
    env_id: str | None = None,
    check_obs: np.ndarray | None = None,
    atol: float = 1e-5,
) -> Path:
    """Write ``algo``'s deployed policy (raw observations in, actions in the environment's
    bounds out) to ``out`` as TorchScript or ONNX, and check it before keeping it.

    Args:
        algo: a trained :class:`~offrl.algos.base.Algorithm`, or the path of a checkpoint
            (training checkpoint or bare state dict; loaded without executing code).
        out: the file to write (written atomically: an existing file is replaced only by a
            checked export).
        format: ``"torchscript"`` or ``"onnx"``; default from ``out``'s suffix.
        env_id: recorded in the file's metadata (a checkpoint's own ``env_id`` if ``algo`` is
            a path and this is ``None``).
        check_obs: observations ``[B, *obs_shape]`` on which the file's actions must equal
            ``algo.act``'s; default 64 standard-normal draws around the stored observation
            statistics.
        atol: largest absolute difference allowed in that check.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ExportError: the format is unknown, tracing failed, ``onnx`` export needs a package
            that is not installed, or the written file does not act as ``algo.act``.
        CheckpointError: ``algo`` is a path that is not an intact offrl checkpoint.
    """
    out = Path(out)
    fmt = format_for(out, format)
    if not isinstance(algo, Algorithm):
        state = load_checkpoint(algo)
        saved_env = state.get("env_id")
        if env_id is None and isinstance(saved_env, str):
            env_id = saved_env
        algo = restore_algorithm(state, where=str(algo))
    # Frames export with uint8 input, unless the check batch says the user's are floats.
    frames = _frames(algo) and (check_obs is None or np.asarray(check_obs).dtype == np.uint8)
    dtype = np.uint8 if frames else np.float32
    obs = _check_batch(algo) if check_obs is None else np.asarray(check_obs, dtype=dtype)
    expected = np.asarray(algo.act(obs))
    module = deployed_policy(algo, frames)
    example = torch.as_tensor(obs[: min(2, len(obs))])
    meta = export_metadata(algo, fmt, env_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        written = Path(tmp) / f"policy{out.suffix or '.' + fmt}"
        actions: np.ndarray | None
        if fmt == "torchscript":
            _write_torchscript(module, example, written, meta)
            actions = _run_torchscript(written, obs)
        else:
            _write_onnx(module, example, written, meta)
            actions = _run_onnx(written, obs)
        if actions is not None:
            _compare(actions, expected, atol, fmt, algo.name)
        atomic_write_bytes(out, written.read_bytes())
    return out


# ---------------------------------------------------------------------- the two formats
def _write_torchscript(
    module: DeployedPolicy, example: torch.Tensor, path: Path, meta: dict[str, Any]
) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about Python values turned into constants: the acting draws and the
        # shapes of the stored weights are meant to be constants.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # PyTorch >= 2.10 marks torch.jit deprecated (in favour of torch.export, whose files
        # need a PyTorch of the same generation to run); TorchScript files still load in any
        # PyTorch and in libtorch, which is what a deployment without offrl needs.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(module, (example,), check_trace=False)
        except Exception as exc:
            raise ExportError(f"torchscript: tracing the policy failed ({exc})") from exc
        torch.jit.save(traced, str(path), _extra_files={"offrl.json": json.dumps(meta)})


def _run_torchscript(path: Path, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
        out: np.ndarray = loaded(torch.as_tensor(obs)).numpy()
    return out


def _write_onnx(
    module: DeployedPolicy, example: torch.Tensor, path: Path, meta: dict[str, Any]
) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise ExportError(
            "onnx: exporting to ONNX needs the onnx package: pip install 'offrl[export]'"
        ) from exc
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
        try:
            # The TorchScript-based exporter: it records the same graph as torch.jit.trace
            # (the acting draws as constants, the batch axis free).
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=["obs"],
                output_names=["action"],
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except Exception as exc:
            raise ExportError(f"onnx: exporting the policy failed ({exc})") from exc
    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))


def _run_onnx(path: Path, obs: np.ndarray) -> np.ndarray | None:
    try:
        import onnxruntime
    except ImportError:
        warnings.warn(
            "offrl.export: onnxruntime is not installed, so the ONNX file was not checked "
            "against Algorithm.act (pip install 'offrl[export]')",
            stacklevel=3,
        )
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"obs": obs})[0]
    return out


# ---------------------------------------------------------------------- helpers
def _compare(actions: np.ndarray, expected: np.ndarray, atol: float, fmt: str, name: str) -> None:
    if actions.shape != expected.shape:
        raise ExportError(
            f"{fmt}: the exported {name} policy returns shape {actions.shape}, Algorithm.act "
            f"{expected.shape}"
        )
    diff = float(np.max(np.abs(actions.astype(np.float64) - expected.astype(np.float64))))
    if not diff <= atol:
        raise ExportError(
            f"{fmt}: the exported {name} policy's actions differ from Algorithm.act's by up to "
            f"{diff:.3g} (allowed {atol:g}); nothing was written"
        )


def _check_batch(algo: Algorithm, size: int = 64) -> np.ndarray:
    """Observations around the stored statistics, seeded: the default check batch."""
    rng = np.random.default_rng(0)
    if _frames(algo):  # sparse 0 / 255 frames, as MinAtar's and Atari's screens
        return (rng.random((size, *algo.spec.obs_shape)) < 0.1).astype(np.uint8) * 255
    mean = algo.obs_mean.cpu().numpy()
    std = algo.obs_std.cpu().numpy()
    noise = rng.standard_normal((size, *algo.spec.obs_shape))
    return (mean + std * noise).astype(np.float32)


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state if state.device.type == "cpu" else state.cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_cpu(v) for v in state)
    return state


def _modules(algo: Algorithm) -> list[nn.Module]:
    """Every module of ``algo`` and of its parts, with their submodules."""
    found: list[nn.Module] = []
    for _, value in algo._stateful().values():
        if isinstance(value, nn.Module):
            found.extend(value.modules())
    return found
