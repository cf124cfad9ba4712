"""Learning tests for AWR and %BC on the built-in Pendulum datasets.

Reference returns as in ``tests/test_learning.py``: random about -1217, the
``pendulum-medium-v0`` behaviour policy -528, the expert -156; ``pendulum-medium-expert-v0`` is
the medium episodes followed by the expert ones (behaviour -342). Observed values are recorded
next to each assertion, with 60 or more return points of headroom.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _training import train_run

_train = train_run


def test_awr_beats_behaviour_on_medium(tmp_path: Path) -> None:
    """AWR (paper defaults, TD(lambda) returns) improves on the behaviour policy."""
    final = _train(tmp_path, algo="awr", dataset="pendulum-medium-v0", steps=2000, seed=0)
    assert final["behaviour_return_mean"] == pytest.approx(-528, abs=15)
    # Observed: -171 at 2000 steps (-195 at 1500, -146 at 3000; Monte-Carlo returns, lam = 1:
    # -208 at 2000; seed 1: -184), from data averaging -528.
    assert final["return_mean"] > final["behaviour_return_mean"] + 100, final


def test_bc_pct_beats_bc_on_medium_expert(tmp_path: Path) -> None:
    """%BC keeps the best 10 % of the episodes -- all expert ones -- and clones them."""
    pct, bc = [], []
    for seed in (0, 1):
        for algo, out in (("bc_pct", pct), ("bc", bc)):
            final = _train(
                tmp_path / f"{algo}-{seed}",
                algo=algo,
                dataset="pendulum-medium-expert-v0",
                steps=1000,
                seed=seed,
            )
            assert final["behaviour_return_mean"] == pytest.approx(-342, abs=15)
            out.append(final["return_mean"])
    # Observed at 1000 steps (CPU): %BC -121 for seeds 0-3 (expert level), BC on the same data
    # -183, -272, -286, -397. At 500 steps %BC had not settled (-120, -133, -216 for seeds
    # 0-2), and a one-seed test passed or failed with the batches drawn (on a GPU: -186).
    assert all(r > -160 for r in pct), pct
    assert sum(pct) / 2 > sum(bc) / 2 + 50, (pct, bc)
