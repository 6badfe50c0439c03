"""Whole-model state of a model whose parameters are sharded across ranks (FSDP), through
torch.distributed.checkpoint's state-dict helpers.

A sharded model's ``state_dict()`` holds each rank's shard (DTensors); a checkpoint needs the full
tensors. ``get_state_dict(full_state_dict=True, cpu_offload=True)`` gathers them: a collective every
rank must enter at the same point, after which rank 0 holds the full dicts on the CPU (the others get
empty ones). The optimizer's full state is keyed by parameter name (FQN), not by position.
"""

from __future__ import annotations

from typing import Any

import torch

# Recorded in a checkpoint document whose model and optimizer state came from the helpers below.
FULL_LAYOUT = "full_state_dict"


def is_sharded(model: torch.nn.Module) -> bool:
    """True when the model's parameters are sharded across ranks (FSDP1/FSDP2, DTensor parameters)."""
    from onthefly.distributed.parity import replicated

    return not replicated(model)


def gather_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Every rank, at the same point: (model, optimizer) full state dicts on rank 0's CPU, empty elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, Any],
                    optimizer_state: dict[str, Any] | None) -> None:
    """Set full state dicts back into a sharded (or plain) model: each rank keeps its own shard.

    Every rank passes the full dicts (each read the same bundle), so nothing is broadcast; with a sharded
    model every rank must call it at the same point (placing the shards may communicate)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, set_model_state_dict, set_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    if optimizer_state is None:
        set_model_state_dict(model, model_state, options=options)
        return
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state, options=options)
