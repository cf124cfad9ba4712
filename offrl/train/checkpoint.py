"""Checkpoints: written atomically, loaded without executing code, damage reported clearly.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and read
with ``torch.load(weights_only=True)``, which refuses anything that would need unpickling code.
Writes go through :func:`offrl.io.atomic_write_bytes` (a temporary file in the same directory,
flushed to disk and then renamed over the target), so a run killed mid-write leaves the previous
checkpoint intact; :func:`remove_stale_temps` deletes what such a kill left behind. Reading a
file that is not an intact offrl checkpoint raises :class:`~offrl.errors.CheckpointError`
naming the file, whatever the damage.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from offrl.algos.base import Algorithm
from offrl.errors import CheckpointError, ResumeError
from offrl.io import atomic_write_bytes

__all__ = [
    "SAFE_RESUME_CHANGES",
    "resume_changes",
    "previous_resumes",
    "save_checkpoint",
    "load_checkpoint",
    "load_algorithm",
    "load_latest",
    "remove_stale_temps",
]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Save ``state`` (tensors and plain values only) atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed load, without torch's advice to unpickle untrusted data."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = next((ln for ln in lines if "weights_only" not in ln), "")
    text = text.split(". ")[0].rstrip(".")  # the first sentence: torch's go on with advice
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution).

    Raises:
        CheckpointError: the file is missing, damaged, truncated, would need code to load, or
            does not hold a dict.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: our error says it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for damaged files
        raise CheckpointError(
            f"{p}: not a readable offrl checkpoint (damaged, truncated, or not written by "
            f"offrl; {_reason(exc)})"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: not an offrl checkpoint (holds a {type(state).__name__})")
    return state


def load_algorithm(path: str | os.PathLike[str], device: str = "cpu") -> Algorithm:
    """The trained algorithm in a checkpoint, ready to ``act``: ``load_algorithm(path).act(obs)``
    takes raw observations and returns actions in the environment's bounds.

    Accepts a training checkpoint (``checkpoints/latest.pt``, ``step_N.pt``) or a bare
    ``Algorithm.state_dict()``. Raises :class:`~offrl.errors.CheckpointError` for anything that
    does not restore.
    """
    return restore_algorithm(load_checkpoint(path, device), device, str(path))


def restore_algorithm(state: dict[str, Any], device: str = "cpu", where: str = "") -> Algorithm:
    """:meth:`Algorithm.from_state_dict` of a training checkpoint's ``"algo"`` entry (or of a
    bare ``Algorithm.state_dict()``), with any failure reported as a
    :class:`~offrl.errors.CheckpointError` naming ``where``."""
    inner = state.get("algo")
    try:
        return Algorithm.from_state_dict(inner if isinstance(inner, dict) else state, device)
    except CheckpointError:
        raise
    except Exception as exc:  # missing keys, wrong shapes, wrong types, unknown algorithm...
        raise CheckpointError(
            f"{where or 'checkpoint'}: does not restore an offrl algorithm ({_reason(exc)})"
        ) from exc


def load_latest(ckpt_dir: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """The newest intact checkpoint of a run: ``latest.pt``, or, if that is damaged or missing,
    the ``step_<N>.pt`` with the largest N that loads (with a warning naming what was skipped).

    Raises:
        CheckpointError: no checkpoint of the directory loads.
    """
    d = Path(ckpt_dir)
    steps = sorted(
        (p for p in d.glob("step_*.pt") if re.fullmatch(r"step_\d+\.pt", p.name)),
        key=lambda p: int(p.stem.split("_")[1]),
        reverse=True,
    )
    skipped: list[str] = []
    for candidate in [d / "latest.pt", *steps]:
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate, map_location)
            step, env_id = state.get("step"), state.get("env_id")
            if not isinstance(state.get("algo"), dict):
                raise CheckpointError(f"{candidate}: not a training checkpoint (no algorithm)")
            if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                raise CheckpointError(f"{candidate}: not a training checkpoint (step {step!r})")
            if env_id is not None and not isinstance(env_id, str):
                raise CheckpointError(f"{candidate}: damaged (env_id {env_id!r})")
            acc = state.get("log_accumulator", {})
            if not (
                isinstance(acc, dict)
                and isinstance(acc.get("sums", {}), dict)
                and all(isinstance(v, int | float) for v in acc.get("sums", {}).values())
                and isinstance(acc.get("count", 0), int)
            ):
                raise CheckpointError(f"{candidate}: damaged (log_accumulator {acc!r})")
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        if skipped:
            warnings.warn(
                f"resuming from {candidate.name}: " + "; ".join(skipped), RuntimeWarning, 2
            )
        return state
    if skipped:
        raise CheckpointError(f"{d}: no intact checkpoint to resume from: " + "; ".join(skipped))
    raise CheckpointError(f"{d}: no checkpoint to resume from")


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that a killed atomic write left in
    ``directory``; returns them. Call it only on a directory no other process is writing."""
    d = Path(directory)
    if not d.is_dir():
        return []
    stale = [p for p in d.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


SAFE_RESUME_CHANGES = (
    "steps",
    "eval_every",
    "eval_episodes",
    "log_every",
    "checkpoint_every",
    "threads",
    "tensorboard",
    "wandb",
)
"""Options that ``--resume --allow-change KEY`` may change (recorded in ``config.json``): how
long the run goes on and how it is observed, not what it learns from. ``progress`` may always
change."""


_FREE_CHANGES = ("progress", "out")


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """``{option: [saved, current]}`` for the options whose values differ (as JSON)."""

    def canon(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str)

    return {
        k: [saved[k], v] for k, v in current.items() if k in saved and canon(saved[k]) != canon(v)
    }


def resume_changes(
    run: str | os.PathLike[str],
    saved: dict[str, Any],
    current: dict[str, Any],
    allow: Iterable[str],
    safe: Iterable[str] = SAFE_RESUME_CHANGES,
) -> dict[str, list[Any]]:
    """The option changes of a resume, ``{option: [saved, current]}``, if all are allowed.

    ``saved`` is the run's recorded options (its checkpoint's), ``current`` those of the resume;
    ``progress`` and ``out`` (a run directory moved or copied) may always differ; options in
    ``allow`` may differ if they are in ``safe``.

    Raises:
        ResumeError: listing every other difference and how to allow the safe ones.
    """
    allow, safe = set(allow), tuple(safe)
    unsafe = sorted(allow - set(safe))
    if unsafe:
        raise ResumeError(
            f"--allow-change {', '.join(unsafe)}: cannot change on resume (only "
            f"{', '.join(safe)} can); train a new run with another --out"
        )
    diffs = _differences(saved, current)
    for free in _FREE_CHANGES:
        diffs.pop(free, None)
    refused = {k: v for k, v in diffs.items() if k not in allow}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        fixable = [k for k in refused if k in safe]
        hint = (
            f" To change {', '.join(fixable)}, add "
            + " ".join(f"--allow-change {k}" for k in fixable)
            + "."
            if fixable
            else ""
        )
        raise ResumeError(
            f"--resume: {run} was trained with other options ({listed}). Resume with the "
            f"original options, or start a new run with another --out.{hint}"
        )
    return diffs


def previous_resumes(run: Path) -> list[dict[str, Any]]:
    """The ``"resumes"`` record of the run's existing ``config.json`` (empty if unreadable)."""
    try:
        previous = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return []
    resumes = previous.get("resumes") if isinstance(previous, dict) else None
    return list(resumes) if isinstance(resumes, list) else []
