"""Dataset names: the cache directory and the resolvers that turn a name into a dataset.

:func:`offrl.data.load_dataset` reads files itself; a name that is not a path goes to the
resolvers registered here. The data layer knows no names of its own: the built-in datasets
(pendulum, MuJoCo) are made by :mod:`offrl.suite`, a higher layer that rolls out policies, and
:mod:`offrl.suite` registers its resolver when imported (``import offrl`` imports it, and every
``import offrl.<anything>`` runs ``offrl/__init__.py`` first). So ``offrl.data`` and the trainer
resolve ``"pendulum-medium-v0"`` without importing upwards.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from offrl.data.dataset import Dataset

__all__ = [
    "progress_to",
    "DatasetResolver",
    "data_dir",
    "dataset_resolvers",
    "register_dataset_resolver",
    "report_progress",
    "resolve_dataset",
]

DatasetResolver = Callable[[str], Dataset]
"""``name -> Dataset``; raises ``KeyError`` (with a message listing the known names) for a name
it does not know."""

_RESOLVERS: list[DatasetResolver] = []
_PROGRESS: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "offrl_dataset_progress", default=None
)


def report_progress(message: str) -> None:
    """Tell whoever is resolving a dataset name what a resolver is doing (a first-use build
    that takes minutes, say). Resolvers call it; :func:`resolve_dataset`'s ``progress`` receives
    it; without one it goes nowhere."""
    callback = _PROGRESS.get()
    if callback is not None:
        callback(message)


@contextlib.contextmanager
def progress_to(callback: Callable[[str], None] | None) -> Iterator[None]:
    """Within the block, :func:`report_progress` messages go to ``callback`` (the trainer routes
    a model-based algorithm's model training through it, as dataset builds)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def data_dir() -> Path:
    """Where built datasets are cached: ``$OFFRL_DATA_DIR``, else ``$XDG_DATA_HOME/offrl``,
    else ``~/.local/share/offrl``."""
    if "OFFRL_DATA_DIR" in os.environ:
        return Path(os.environ["OFFRL_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "offrl"


def register_dataset_resolver(resolver: DatasetResolver) -> DatasetResolver:
    """Add ``resolver`` (idempotent: registering the same function again does nothing).

    Resolvers are tried in registration order; the first that does not raise ``KeyError`` wins.
    Usable as a decorator.
    """
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)
    return resolver


def dataset_resolvers() -> tuple[DatasetResolver, ...]:
    """The registered resolvers, in the order they are tried."""
    return tuple(_RESOLVERS)


def resolve_dataset(name: str, progress: Callable[[str], None] | None = None) -> Dataset:
    """The dataset called ``name`` by the first resolver that knows it; ``progress`` receives
    the messages resolvers send with :func:`report_progress` (e.g. "building ... (first use)").

    Raises:
        LookupError: no resolver is registered (built-in datasets are not available).
        KeyError: no resolver knows ``name``; the message joins the resolvers' messages.
    """
    if not _RESOLVERS:
        raise LookupError("no dataset resolver is registered")
    details = []
    token = _PROGRESS.set(progress)
    try:
        for resolver in _RESOLVERS:
            try:
                return resolver(name)
            except KeyError as exc:
                details.append(str(exc.args[0]) if exc.args else "")
    finally:
        _PROGRESS.reset(token)
    raise KeyError("; ".join(d for d in details if d))
