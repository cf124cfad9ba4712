"""Importing user code (ground floor): the ``--import`` helper of the CLI and the grid runner.

A user's module (a dotted name or a ``.py`` file) registers its algorithms with
:func:`offrl.algos.base.register` when imported; :func:`import_module` imports it once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["import_module"]


def import_module(target: str) -> object:
    """Import a user's module (a dotted name, or a ``.py`` file path) so that the algorithms it
    ``register``s can be named by ``--algo``.

    A dotted name is looked up from the current directory too (as ``python -m`` does). A file
    already imported (under any module name) is not executed twice, so registering stays
    idempotent.
    """
    if not target.endswith(".py"):
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name and (target + ".").startswith(exc.name + "."):
                raise ValueError(f"--import: no module named {target!r}") from None
            raise
    path = Path(target).resolve()
    if not path.is_file():
        raise ValueError(f"--import: no such file {target!r}")
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module
