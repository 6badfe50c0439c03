"""Getting per-step values off the device without making the training thread wait.

On CPU a value is read right away (``item()``, or a numpy copy of a per-sample vector: a microsecond or
two). What the training thread publishes holds no reference to a CPU tensor, so no CPU tensor is ever
freed on the bus's pump thread: freeing a tensor releases and retakes the GIL, and on the pump that
turned each drain into a run of GIL hand-offs with the training thread (on the reference CPU loop the
training thread blocked 0.7-0.9 times a step, against about 0.1 once the pump freed no tensors).
On an accelerator a non-blocking copy is started and an event recorded; the bus's pump thread
waits for that event when it resolves the value, so the training thread never synchronises.
"""

from __future__ import annotations

from typing import Any

import torch


class PendingCopy:
    """A device-to-host copy in flight; ``value()`` waits for it (on the calling thread only)."""

    __slots__ = ("_host", "_event", "_scalar")

    def __init__(self, tensor: torch.Tensor, scalar: bool) -> None:
        self._host = tensor.detach().to("cpu", non_blocking=True)
        self._event = torch.cuda.Event() if tensor.device.type == "cuda" else None
        if self._event is not None:
            self._event.record()
        self._scalar = scalar

    def value(self) -> Any:
        if self._event is not None:
            self._event.synchronize()
        return float(self._host.item()) if self._scalar else self._host.numpy()


def scalar_later(value: torch.Tensor | float | None) -> Any:
    """A float now (CPU) or a PendingCopy (accelerator); None stays None."""
    if value is None or not isinstance(value, torch.Tensor):
        return value
    if value.device.type == "cpu":
        return float(value.item())
    return PendingCopy(value, scalar=True)


def array_later(value: torch.Tensor) -> Any:
    """A float32 numpy array now (CPU: a copy, holding no reference to the tensor) or a PendingCopy
    (accelerator)."""
    if value.is_cpu:
        return (value if value.dtype is torch.float32 else value.float()).numpy(force=True).copy()
    return PendingCopy(value.float(), scalar=False)


def indices_now(index: Any) -> Any:
    """An index batch to publish: a tensor becomes a numpy copy (as in ``array_later``), anything else
    (a list, an int, an array that owns its data) is handed on as it is."""
    if isinstance(index, torch.Tensor):
        return index.numpy(force=True).copy()
    return index
