"""Load a script of ``benchmarks/`` as a module, the way ``python benchmarks/<script>`` runs it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(relative: str, name: str) -> ModuleType:
    """``benchmarks/<relative>`` as module ``name``. Its folder goes on ``sys.path`` first (as
    for ``python benchmarks/<relative>``, so its sibling modules import), and the module is
    registered in ``sys.modules`` (dataclasses look their module up there)."""
    script = BENCHMARKS / relative
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
