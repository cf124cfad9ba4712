"""Shared test setup: a per-session dataset cache and a small thread count.

Built-in datasets are built once per test session into a temporary directory (``OFFRL_DATA_DIR``
is exported, so subprocesses started by the tests share the cache), never into the user's home.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

torch.set_num_threads(1)
# One-off lazy imports (about 3 s together) paid here rather than inside whichever test comes
# first: the first optimiser imports torch._dynamo, the first assert_close torch.distributed.
torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
torch.testing.assert_close(torch.zeros(1), torch.zeros(1))


@pytest.fixture(autouse=True, scope="session")
def offrl_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Point ``OFFRL_DATA_DIR`` at a session-scoped temporary directory."""
    path = str(tmp_path_factory.mktemp("offrl-data"))
    old = os.environ.get("OFFRL_DATA_DIR")
    os.environ["OFFRL_DATA_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("OFFRL_DATA_DIR", None)
    else:
        os.environ["OFFRL_DATA_DIR"] = old


# Files whose tests train for a minute or more each. Collected first, they start early and the
# hundreds of short tests fill the other worker around them, instead of one long test running
# alone at the end (the default suite ran 14 min with a one-worker tail of ~5 min).
_LONG_FIRST = [
    f"tests/{name}"
    for name in (
        "test_learning_uncertainty.py",
        "test_learning_bcq_bear.py",
        "test_learning.py",
        "test_learning_awr_pctbc.py",
        "test_bench_grid.py",
    )
]


def _rank(item: pytest.Item) -> int:
    for i, prefix in enumerate(_LONG_FIRST):
        if item.nodeid.startswith(prefix):
            return i
    return len(_LONG_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long training tests first, longest files first (a stable sort)."""
    items.sort(key=_rank)
