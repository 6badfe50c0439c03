"""The total 2-norm of a step's gradients, before any hook or the optimizer changes them.

Taken in the step, on the gradients' device, with no host sync (on an accelerator the value stays a
device tensor until the bus's pump reads it). Off-thread forms were measured on the CPU reference MLP
(784-256-10, batch 128) and were slower for the training thread, not faster:
- on the bus's pump thread: it holds the gradients while the next step allocates new ones (14-91 page
  faults and up to 0.3 ms of system time a step);
- on a Python worker thread: GIL contention with the DataLoader;
- on a native worker thread that never takes the GIL (summing while ``optimizer.step()`` runs): +45 to
  +110 us a step against the in-step norm's cost, from the second core reading gradients the training
  core holds in its cache. It only paid off for gradients far larger than the cache (128 MB: the in-step
  norm's 12 ms a step went to nothing).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def tensor_norms(grads: list[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Each gradient's 2-norm (``torch._foreach_norm``); sparse gradients are coalesced first."""
    try:
        return torch._foreach_norm(grads)
    except (NotImplementedError, RuntimeError):  # sparse gradients (nn.Embedding(sparse=True))
        return [torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g) for g in grads]


def grad_norm(params: list[torch.Tensor], scaler: Any = None) -> torch.Tensor | None:
    """This step's gradient norm as ``clip_grad_norm_`` computes it (unscaled by an AMP ``scaler``), or None
    when no parameter has a gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    norm = torch.linalg.vector_norm(torch.stack(tensor_norms(grads)))
    if scaler is not None:
        norm = norm / scaler.get_scale()
    return norm
