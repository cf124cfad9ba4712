"""offrl.runtime: the allocator setting is applied once, and can be switched off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = (
    "from offrl.algos import EnvSpec, get_algorithm\n"
    "from offrl.runtime import tune_allocator\n"
    "get_algorithm('bc')(EnvSpec((3,), 1))\n"
    "print(tune_allocator())\n"
)


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and "glibc" in (
            os.confstr("CS_GNU_LIBC_VERSION") or ""
        )
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="glibc only")
@pytest.mark.parametrize(("flag", "expected"), [("1", "True"), ("0", "False")])
def test_building_an_algorithm_tunes_malloc_unless_switched_off(flag: str, expected: str) -> None:
    env = {**os.environ, "OFFRL_TUNE_MALLOC": flag}
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
