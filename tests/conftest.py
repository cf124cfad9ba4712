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
