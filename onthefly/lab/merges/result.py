"""What every merge returns, and the two helpers every merge needs: a model copy and a weight hash.

A merge produces a real, separate ``nn.Module`` (never the generalist object itself), reports the hash
of its state dict so a comparison or an applied resolution names exactly which weights it means, and
says what it spent: sample-gradients (charged to the lab's ledger) and forward-only samples (BN
recalibration, teacher logits), which the protocol reports separately.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn


@dataclass(frozen=True)
class MergeResult:
    """One merge's product. ``model`` is a new module; ``state_hash`` is ``state_dict_hash(model)``."""

    kind: str
    model: nn.Module
    state_hash: str
    sample_gradients: int = 0
    forward_samples: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)


def state_dict_hash(source: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in key order: equal iff the weights are."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()
