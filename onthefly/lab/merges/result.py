"""What every merge returns: the new model, the hash of its weights, and what making it cost.

A merge produces a real, separate ``nn.Module`` (never the generalist object itself), reports the hash
of its state dict so a comparison or an applied resolution names exactly which weights it means, and
says what it spent: sample-gradients (charged to the lab's ledger) and forward-only samples (BN
recalibration, teacher logits), which the protocol reports separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch.nn as nn

# One hash for the whole lab: a scored checkpoint, a merge and an applied resolution compare by it.
from onthefly.lab.scoring import state_dict_hash

__all__ = ["MergeResult", "state_dict_hash"]


@dataclass(frozen=True)
class MergeResult:
    """One merge's product. ``model`` is a new module; ``state_hash`` is ``state_dict_hash(model)``."""

    kind: str
    model: nn.Module
    state_hash: str
    sample_gradients: int = 0
    forward_samples: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)
