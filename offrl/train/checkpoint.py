"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values saved with ``torch.save`` and read
with ``torch.load(weights_only=True)``, which refuses anything that would need unpickling code.
Writes go through :func:`offrl.io.atomic_write_bytes` (a temporary file in the same directory,
flushed to disk and then renamed over the target), so a run killed mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from offrl.io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Save ``state`` (tensors and plain values only) atomically."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an offrl checkpoint")
    return state
