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


def after_base_seed(states: dict[str, Any], loader: Any, generators: list[torch.Generator] = ()) -> dict[str, Any]:
    """``states`` advanced past the draw a new DataLoader iterator makes first (its base seed: one int64
    from ``loader.generator``, else from the global torch generator), without touching any generator.

    For loops whose epoch hook runs before the epoch's iterator exists (Lightning after its first
    epoch): a checkpoint's epoch-start RNG is defined as the state the sampler draws the order from.
    """
    gen = getattr(loader, "generator", None)
    out = dict(states)
    if isinstance(gen, torch.Generator):
        index = next((i for i, g in enumerate(generators) if g is gen), None)
        if index is None:
            return out
        saved = gen.get_state()
        try:
            gen.set_state(states["loader"][index])
            torch.empty((), dtype=torch.int64).random_(generator=gen)
            out["loader"] = list(states["loader"])
            out["loader"][index] = gen.get_state()
        finally:
            gen.set_state(saved)
        return out
    saved = torch.get_rng_state()
    try:
        torch.set_rng_state(states["torch"])
        torch.empty((), dtype=torch.int64).random_()
        out["torch"] = torch.get_rng_state()
    finally:
        torch.set_rng_state(saved)
    return out
