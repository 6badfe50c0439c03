"""Every random number generator a training step may draw from: Python, NumPy, torch CPU and CUDA,
plus the DataLoader's own generators (a loader or sampler built with ``generator=``)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct torch.Generator objects a DataLoader draws its seeds and order from."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    for gen in candidates:
        if isinstance(gen, torch.Generator) and not any(gen is g for g in found):
            found.append(gen)
    return found


def capture(generators: list[torch.Generator] = ()) -> dict[str, Any]:
    """A snapshot of all RNG states (tensors stay tensors; the codec splits them out)."""
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "loader": [g.get_state() for g in generators],
    }


def restore(states: dict[str, Any], generators: list[torch.Generator] = ()) -> None:
    """Put every generator back to ``states`` (CUDA devices beyond those present are skipped)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(states["numpy"]))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for index, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    for gen, state in zip(generators, states.get("loader") or []):
        gen.set_state(state)
