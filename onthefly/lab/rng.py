"""Give the user's random numbers back: the lab's own work on the training thread draws from the global RNGs.

Reading a sample, collating a batch or training a copy runs the user's dataset (whose augmentations draw
from torch, numpy and ``random``) and the lab's own modules (dropout) on the training thread. ``kept_rng``
saves every global generator such code can draw from and restores it afterwards, so the run goes on with
exactly the numbers it would have drawn without the lab.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


@contextmanager
def kept_rng(seed: int | None = None) -> Iterator[None]:
    """Afterwards torch's CPU generator, every initialised CUDA device's, numpy's and ``random``'s are as
    they were before. With ``seed``, the block draws from generators seeded with it (reproducible lab work).

    Only the generators that are saved are seeded: ``torch.manual_seed`` would also seed CUDA devices not
    saved here (or, before CUDA starts, queue a seed that replaces the user's own when it does)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() \
        else []
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            if seed is not None:
                torch.default_generator.manual_seed(int(seed))
                for device in devices:
                    torch.cuda.default_generators[device].manual_seed(int(seed))
                random.seed(seed)
                np.random.seed(int(seed) % 2**32)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
