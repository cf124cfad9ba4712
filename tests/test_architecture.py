"""The import graph of ``offrl`` is layered and has no cycles (docs/architecture.md).

Every ``import`` / ``from ... import`` anywhere in a module counts: at module level, inside
functions (lazy imports), inside ``try`` and inside ``if TYPE_CHECKING:`` blocks, as do
``importlib.import_module("offrl....")`` calls with a literal name. A module may import modules of
its own layer (without cycles) and of lower layers, never of a higher one.

Exemptions, all of them:

* ``offrl/__init__.py`` is the package's aggregator: it may import every layer (it re-exports
  the public API and imports :mod:`offrl.suite` so that built-in dataset names resolve). In
  exchange no module inside offrl may import ``offrl`` itself (``import offrl``, ``from offrl
  import X`` of a non-module name): the aggregator sits above everything.
* An ``if TYPE_CHECKING:`` import that points to a strictly lower layer is left out of the
  cycle search (it never runs). Same-layer or upward ``TYPE_CHECKING`` imports count fully.

Edges go to the module named (``from offrl.data import loaders`` -> ``offrl.data.loaders``;
``from offrl.data import Dataset`` -> the package ``offrl.data``). Python's implicit import of
a parent package is not an edge: ``offrl.data.loaders`` importing ``offrl.data.dataset`` does
not make it depend on ``offrl/data/__init__.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "offrl"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / ROOT

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "ground floor",
        (
            "offrl._version",
            "offrl.config",
            "offrl.envs",
            "offrl.errors",
            "offrl.io",
            "offrl.plugins",
            "offrl.rng",
            "offrl.runtime",
            "offrl.scores",
        ),
    ),
    ("data", ("offrl.data",)),
    ("nn", ("offrl.nn", "offrl.optim", "offrl.losses")),
    ("dynamics", ("offrl.dynamics",)),
    ("algos", ("offrl.algos",)),
    ("train", ("offrl.train",)),
    ("ope & export", ("offrl.ope", "offrl.export")),
    ("suite", ("offrl.suite",)),
    ("bench", ("offrl.bench",)),
    ("cli", ("offrl.cli",)),
)
"""Bottom to top. A prefix names a module or a package (with all its submodules)."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool  # inside ``if TYPE_CHECKING:``


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer in :data:`LAYERS` (longest prefix), or None."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _describe(module: str) -> str:
    layer = layer_of(module)
    return f"{module} (layer {layer} {LAYERS[layer][0]})" if layer is not None else module


def discover(package_dir: Path = PACKAGE_DIR) -> dict[str, tuple[str, bool, str]]:
    """``module name -> (source, is_package, file)`` of every module under ``package_dir``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path.read_text(encoding="utf-8"), is_package, str(rel) + ".py")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_only_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside the body of an ``if TYPE_CHECKING:``."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                inside.update(id(n) for n in ast.walk(stmt))
    return inside


def imports_of(module: str, source: str, is_package: bool, known: Iterable[str]) -> list[Edge]:
    """Every import of an ``offrl`` module in ``source`` (anywhere in the file)."""
    known = set(known)
    tree = ast.parse(source)
    type_only = _type_only_nodes(tree)
    package = module if is_package else module.rpartition(".")[0]
    edges = []

    def add(target: str, node: ast.stmt | ast.expr) -> None:
        if target == ROOT or target.startswith(ROOT + "."):
            edges.append(Edge(module, target, node.lineno, id(node) in type_only))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                add(arg.value, node)
    return edges


def find_cycles(graph: Mapping[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """``(component, cycle)`` per strongly connected component that has a cycle: its modules,
    and one shortest cycle ``[a, b, ..., a]`` through the first of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # Shortest path back to start inside the component (breadth first).
        parents: dict[str, str] = {}
        frontier = [start]
        end = None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph.get(v, ())):
                    if w not in members:
                        continue
                    if w == start:
                        end = v
                        break
                    if w not in parents:
                        parents[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        assert end is not None
        path = [end]
        while path[-1] != start:
            path.append(parents[path[-1]])
        cycles.append((component, [*reversed(path), start]))
    return cycles


def check(modules: Mapping[str, tuple[str, bool, str]]) -> list[str]:
    """All layering problems of ``modules`` (``name -> (source, is_package, file)``)."""
    problems = []
    edges: list[Edge] = []
    for name, (source, is_package, _) in sorted(modules.items()):
        if name != ROOT and layer_of(name) is None:
            problems.append(
                f"{name} has no layer: add it to LAYERS in tests/test_architecture.py and to "
                "docs/architecture.md"
            )
        edges += sorted(imports_of(name, source, is_package, modules), key=lambda e: e.line)

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for e in edges:
        where = f"{modules[e.source][2]}:{e.line}"
        kind = " (TYPE_CHECKING)" if e.type_only else ""
        if e.target not in modules:
            problems.append(f"{where}: {e.source} imports {e.target}{kind}, which does not exist")
            continue
        if e.source == ROOT:  # the aggregator
            continue
        if e.target == ROOT:
            problems.append(
                f"{where}: {e.source} imports the package aggregator 'offrl'{kind}; import the "
                "module that defines the name instead (e.g. offrl._version for __version__)"
            )
            continue
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is None or dst is None:
            continue  # reported above
        if dst > src:
            problems.append(
                f"{where}: upward import{kind}: {_describe(e.source)} imports {_describe(e.target)}"
            )
            continue
        if e.type_only and dst < src:
            continue  # never runs, and points down: cannot close a cycle
        graph[e.source].add(e.target)

    for component, cycle in find_cycles(graph):
        steps = []
        for a, b in zip(cycle[:-1], cycle[1:], strict=True):
            lines = sorted(e.line for e in edges if e.source == a and e.target == b)
            steps.append(f"{a} -> {b} ({modules[a][2]}:{lines[0]})")
        problems.append(
            f"import cycle: {' ; '.join(steps)}  [all modules on cycles with these: "
            f"{', '.join(component)}]"
        )
    return problems


# ---------------------------------------------------------------------- the real package
def test_import_graph_is_layered_and_acyclic() -> None:
    modules = discover()
    assert "offrl.data.dataset" in modules and "offrl.cli" in modules
    problems = check(modules)
    assert not problems, "offrl's import layering is broken (docs/architecture.md):\n  " + (
        "\n  ".join(problems)
    )


def test_every_layer_prefix_exists() -> None:
    """A stale entry in LAYERS (a renamed module) is caught too."""
    modules = discover()
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


# ---------------------------------------------------------------------- the checker itself
def _synthetic(sources: dict[str, str]) -> dict[str, tuple[str, bool, str]]:
    packages = {name.rpartition(".")[0] for name in sources} - {""}
    out = {p: ("", True, p.replace(".", "/") + "/__init__.py") for p in packages}
    for name, source in sources.items():
        out[name] = (source, name in packages, name.replace(".", "/") + ".py")
    return out


def test_checker_accepts_a_clean_graph() -> None:
    modules = _synthetic(
        {
            "offrl.io": "import os\n",
            "offrl.data.a": "from offrl.io import x\n",
            "offrl.data.b": "from . import a\nfrom .a import y\n",
            "offrl.train.t": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from offrl.data.b import z\n"
                "def f():\n    from offrl.data import a\n"
            ),
        }
    )
    assert check(modules) == []


def test_checker_catches_a_lazy_cycle() -> None:
    modules = _synthetic(
        {
            "offrl.data.a": "def f():\n    from offrl.data.b import x\n",
            "offrl.data.b": "import offrl.data.c\n",
            "offrl.data.c": "def g():\n    from offrl.data import a\n",
        }
    )
    (problem,) = check(modules)
    assert problem.startswith("import cycle: offrl.data.a -> offrl.data.b (offrl/data/a.py:2)")
    assert "offrl.data.c -> offrl.data.a (offrl/data/c.py:2)" in problem


def test_checker_catches_upward_imports() -> None:
    modules = _synthetic(
        {
            "offrl.data.a": "def f():\n    from offrl.train.t import x\n",
            "offrl.train.t": "try:\n    import offrl.cli\nexcept ImportError:\n    pass\n",
            "offrl.cli": "",
            "offrl.nn.m": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import offrl.algos.z\n"
            ),
            "offrl.algos.z": "",
        }
    )
    problems = check(modules)
    assert any(
        p.startswith(
            "offrl/data/a.py:2: upward import: offrl.data.a (layer 1 data) imports "
            "offrl.train.t (layer 5 train)"
        )
        for p in problems
    ), problems
    assert any(p.startswith("offrl/train/t.py:2: upward import: ") for p in problems)
    assert any("offrl/nn/m.py:3: upward import (TYPE_CHECKING)" in p for p in problems)
    assert len(problems) == 3


def test_checker_catches_the_aggregator_unknown_modules_and_unlayered_modules() -> None:
    modules = _synthetic(
        {
            "offrl.data.a": "import offrl\n",
            "offrl.data.b": "from offrl import __version__\n",
            "offrl.data.c": "import importlib\nimportlib.import_module('offrl.data.gone')\n",
            "offrl.newthing": "",
        }
    )
    modules["offrl"] = (
        "import offrl.data.a\nfrom offrl.newthing import q\n",
        True,
        "offrl/__init__.py",
    )
    problems = check(modules)
    assert sum("imports the package aggregator 'offrl'" in p for p in problems) == 2
    assert any("offrl.data.c imports offrl.data.gone, which does not exist" in p for p in problems)
    assert any(p.startswith("offrl.newthing has no layer") for p in problems)
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("offrl.io", 0),
        ("offrl.data.loaders", 1),
        ("offrl.optim", 2),
        ("offrl.dynamics.fit", 3),
        ("offrl.algos.base", 4),
        ("offrl.train.checkpoint", 5),
        ("offrl.ope.fqe", 6),
        ("offrl.export", 6),
        ("offrl.suite.factory", 7),
        ("offrl.bench.grid", 8),
        ("offrl.cli", 9),
        ("offrl.iox", None),
    ],
)
def test_layer_of(module: str, layer: int | None) -> None:
    assert layer_of(module) == layer
