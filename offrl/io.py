"""Atomic file writes (the ground floor: imports nothing from offrl).

Every writer here puts the data in a temporary file in the destination directory, flushes it
and renames it over the target, so a process killed mid-write leaves the previous file intact
(or no file), never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "reserve_temp",
    "replace_when_done",
    "json_safe",
    "write_json",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode(encoding))


def reserve_temp(path: str | os.PathLike[str]) -> Path:
    """Create an empty temporary file next to ``path`` (making its directory) and return it.

    Not ``mkstemp``: its files are private (0600); this one gets the usual umask permissions,
    so the file renamed over ``path`` has the permissions a plain ``open(path, "w")`` would give.
    Raises ``OSError`` when the directory cannot be written.
    """
    target = Path(path)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def replace_when_done(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Iterator[None]:
    """Rename ``tmp`` over ``path`` if the block succeeds; delete ``tmp`` if it raises."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write to (by any library, e.g. ``h5py``);
    it is renamed over ``path`` if the block succeeds and removed if it raises."""
    tmp = reserve_temp(path)
    with replace_when_done(tmp, path):
        yield tmp


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, recursively
    through dicts, lists and tuples, so that ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as indented, strictly valid JSON (non-finite numbers become ``null``),
    atomically."""
    atomic_write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")
