"""Per-sample losses computed off the training thread when training runs on the CPU.

On an accelerator the training thread only launches the per-sample loss kernels and the bus's pump thread
waits for the copies (see ``host_values``). On the CPU every tensor op run for telemetry is time taken from
training: a built-in loss's per-sample values cost about 1.5% of a small model's step. So on the CPU the
training thread hands the pump thread copies of the step's detached predictions and targets (two small
copies, so nothing the user does afterwards can change them) and the pump computes the values, every
pending step of one loss in one call over the concatenated batches: ``reduction='none'`` is row-wise, so
each value is exactly (bit for bit) what the step's own batch gives. Only torch's own loss modules are
deferred (pure, thread-safe functions); a user's loss function runs in the step, as before.

The gradient norm is not deferred. Reading the step's gradients later means holding them while the next
steps allocate new ones, and on the reference model that made the allocator map fresh pages every step
(14-91 page faults and up to 0.3 ms of system time per step, measured with ``getrusage``): more than the
norm itself costs (about 50 µs) when computed in the step.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np
import torch


class LaterSampleLosses:
    """Per-sample losses ``fn(pred, target)`` of one step, computed by :func:`resolve_pending` (batched with
    the other pending steps of the same loss) or, alone, by ``value()``."""

    __slots__ = ("fn", "pred", "target", "result")

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor,
                 target: torch.Tensor) -> None:
        self.fn, self.pred, self.target = fn, pred.detach().clone(), target.detach().clone()
        self.result: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.pred.shape[0]),)

    def _key(self) -> tuple:
        return (self.fn, self.pred.dtype, tuple(self.pred.shape[1:]), self.target.dtype,
                tuple(self.target.shape[1:]))

    def value(self) -> np.ndarray:
        if self.result is None:
            with torch.no_grad():
                self.result = _per_row(self.fn(self.pred, self.target), self.pred.shape[0])
            self.pred = self.target = None  # type: ignore[assignment]
        return self.result


def _per_row(values: torch.Tensor, batch: int) -> np.ndarray:
    if values.dim() == 0:
        values = values.expand(batch)
    elif values.dim() > 1:
        values = values.reshape(values.shape[0], -1).mean(dim=1)
    return values.float().numpy()


def resolve_pending(values: Iterable[Any]) -> None:
    """Compute every :class:`LaterSampleLosses` among ``values``: one call per loss and shape over the
    concatenated batches, split back per step. Called by the pump thread before it resolves events."""
    groups: dict[tuple, list[LaterSampleLosses]] = defaultdict(list)
    for value in values:
        if type(value) is LaterSampleLosses and value.result is None:
            groups[value._key()].append(value)
    for group in groups.values():
        if len(group) == 1:
            continue  # value() computes it alone
        with torch.no_grad():
            sizes = [int(v.pred.shape[0]) for v in group]
            pred = torch.cat([v.pred for v in group])
            target = torch.cat([v.target for v in group])
            out = group[0].fn(pred, target)
        if out.dim() == 0 or out.shape[0] != sum(sizes):
            continue  # not row-wise after all: each step computes its own
        if out.dim() == 1:  # one value per sample: one host array, split into views per step
            parts = np.split(out.float().numpy(), np.cumsum(sizes[:-1]))
        else:
            parts = [_per_row(part, part.shape[0]) for part in torch.split(out, sizes)]
        for v, part in zip(group, parts):
            v.result = part
            v.pred = v.target = None  # type: ignore[assignment]


def builtin_loss(fn: Any) -> bool:
    """A loss module of torch itself (``nn.CrossEntropyLoss()``, ...): a pure, thread-safe function."""
    owner = fn.__self__ if hasattr(fn, "__self__") else fn
    return isinstance(owner, torch.nn.modules.loss._Loss) and type(owner).__module__.startswith("torch.nn.")


def can_defer_sample_losses(pred: Any, target: Any) -> bool:
    return (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and pred.device.type == "cpu"
            and target.device.type == "cpu" and pred.dim() >= 1 and target.dim() >= 1
            and pred.shape[0] == target.shape[0])  # rows are samples (not so for, e.g., CTC's [T, N, C])
