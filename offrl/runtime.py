"""Process-level settings that make CPU training faster.

**glibc's allocator.** PyTorch's CPU tensors come straight from ``malloc``. With glibc's
defaults, a block above the mmap threshold (128 KiB at start, raised as large blocks are freed)
is mapped fresh from the kernel, and freed memory at the top of the heap beyond the trim
threshold is handed back to the kernel. A training step allocates and frees the same large
activations and gradients every step (a 256 x 256 fp32 matrix is already 256 KiB; CQL's
activations are 16 MiB), so with the defaults a step can pay page faults and kernel zeroing for
memory it just released. On this project's 2-core machine that cost CQL a quarter of its
update time: 4.5 -> 5.9 updates/s (2 threads, three alternating pairs of runs, each pair faster
with the setting). Updates whose tensors are small (TD3+BC at batch 256) showed no change.
Intel's and PyTorch's CPU tuning guides fix the same thing by preloading jemalloc or tcmalloc;
:func:`tune_allocator` gets the effect without a preload: blocks up to 32 MiB (glibc's ceiling
for the threshold) come from the heap, and the heap keeps up to 1 GiB of freed memory for reuse.
Peak memory is unchanged; the process simply keeps what it has already used.

offrl applies it when the first algorithm is built. Set ``OFFRL_TUNE_MALLOC=0`` to leave the
allocator alone (e.g. to measure its effect, or inside a host application that tunes malloc
itself). Outside glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["tune_allocator"]

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""Blocks up to this size come from the heap (glibc's maximum for ``M_MMAP_THRESHOLD``)."""
TRIM_THRESHOLD = 1024 * 1024 * 1024
"""Freed memory the heap may keep before returning any to the kernel."""


@functools.cache
def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for training (once per process; see the module doc).

    Returns whether the allocator is tuned: False outside glibc, or when ``OFFRL_TUNE_MALLOC=0``.
    """
    if os.environ.get("OFFRL_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only (not musl)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
