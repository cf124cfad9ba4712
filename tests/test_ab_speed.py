"""benchmarks/ab_speed.py: the import rewrite and materialising a git ref as another package."""

from __future__ import annotations

import importlib
import sys

from _scripts import load_script

ab = load_script("ab_speed.py", "ab_speed")


def test_rewrite_source_points_every_reference_at_the_new_name() -> None:
    src = (
        '"""Docs: from offrl.algos import x."""\n'
        "import offrl\n"
        "import offrl.data.builtin\n"
        "from offrl.algos import get_algorithm\n"
        "from offrl import EnvSpec\n"
        'v = offrl.__version__; m = "offrl.data.builtin"; p = "offrl"; q = "offrl-v1"\n'
        "offrl_x = 1\n"
    )
    out = ab.rewrite_source(src, "offrl_before")
    assert "import offrl_before\n" in out
    assert "import offrl_before.data.builtin\n" in out
    assert "from offrl_before.algos import get_algorithm" in out
    assert "from offrl_before import EnvSpec" in out
    assert "v = offrl_before.__version__" in out
    assert 'm = "offrl_before.data.builtin"' in out
    assert 'p = "offrl"' in out and 'q = "offrl-v1"' in out  # names, not module paths
    assert "offrl_x = 1" in out
    assert "Docs: from offrl_before.algos" in out
    assert ab.rewrite_source(out, "offrl_before") == out  # idempotent


def test_materialised_head_imports_as_its_own_package(tmp_path) -> None:
    ab.materialise(ab.resolve_ref("HEAD"), "offrl_abtest", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        v = ab.Version.load("before", "offrl_abtest", "HEAD", None)
        assert "bc" in v.list_algorithms()
        assert v.get_algorithm("bc").__module__.startswith("offrl_abtest.")
        assert not [p for p in ab.leaked_imports(v, v, tmp_path) if "loaded from" in p]
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "offrl_abtest"]:
            del sys.modules[name]
        importlib.invalidate_caches()
