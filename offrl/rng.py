"""Restoring torch generators from checkpoints, on the device they ran on or another.

A CPU generator (Mersenne Twister, a 5056-byte state) and a CUDA one (Philox: seed and offset,
16 bytes) keep states of different kinds, and ``Generator.set_state`` takes only a CPU byte
tensor of its own kind. A checkpoint loaded with ``map_location="cuda"`` also moves the saved
state onto the GPU, where ``set_state`` refuses it.

:func:`restore_generator` therefore restores a state of the generator's own kind exactly (a
resumed run is bit-identical to an uninterrupted one) and re-seeds the generator when the state
came from another kind of device: a policy trained on a GPU and evaluated or deployed on a CPU
never draws from it, and a run resumed on another device cannot replay the uninterrupted one
anyway, since the two devices' kernels round differently.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["restore_generator"]


def restore_generator(generator: torch.Generator, state: torch.Tensor, *fallback: int) -> bool:
    """Set ``generator`` to a saved ``get_state()``; returns whether it was restored exactly.

    A state saved by a generator of another kind (see the module docstring) is not restorable:
    the generator is then seeded from the integers ``fallback`` (e.g. the run's seed and step),
    so that the continuation is still a function of the checkpoint alone.
    """
    state = state.detach().to("cpu", torch.uint8)
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    generator.manual_seed(int(np.random.SeedSequence(list(fallback)).generate_state(1)[0]))
    return False
