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
        "test_model_based.py",
        "test_learning_finetune.py",
        "test_learning_uncertainty.py",
        "test_learning_bcq_bear.py",
        "test_learning.py",
        "test_learning_awr_pctbc.py",
        "test_bench_grid.py",
        "test_random_kills.py",
        "test_tianshou_grid.py",
    )
]

# Files whose module fixture runs a peer library in its own environment (d3rlpy, Tianshou: about
# 5 s to start): each file's tests go to one worker, so the peer runs once, not once per worker.
_PEER_FILES = (
    "test_d3rlpy_same_",
    "test_d3rlpy_files",
    "test_tianshou_files",
    "test_tianshou_same_",
)


def _rank(item: pytest.Item) -> int:
    for i, prefix in enumerate(_LONG_FIRST):
        if item.nodeid.startswith(prefix):
            return i
    return len(_LONG_FIRST)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long training tests first, longest files first (a stable sort), and keep each
    peer file's tests on one worker (``--dist loadgroup``)."""
    items.sort(key=_rank)
    for item in items:
        stem = item.path.stem
        if stem.startswith(_PEER_FILES) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(stem))
