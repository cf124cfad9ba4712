"""The torch devices that device-aware tests run on: the CPU always, and CUDA where the machine
has it. CI has no GPU; on a GPU machine the same tests check the CUDA path too (the project's
record of such runs: CHANGELOG)."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
