"""Per-step telemetry computed off the training thread when training runs on the CPU.

On an accelerator the training thread only launches the telemetry kernels (a few microseconds) and the
bus's pump thread waits for the copies (see ``host_values``). On the CPU every tensor op run for telemetry
is time taken from training: the per-sample losses of a built-in loss and the gradient norm together cost
about 4% of a small model's step. So on the CPU, where it is safe, the training thread hands the pump
thread what those values are computed from, and the pump computes them:

- per-sample losses of a built-in ``torch.nn`` loss, from copies of the step's detached predictions and
  targets (two small copies, so nothing the user does afterwards can change them). The pump computes every
  pending step of one loss in one call over the concatenated batches: ``reduction='none'`` is row-wise,
  so each value is exactly what the step's own batch gives.
- the gradient norm, from the step's gradient tensors themselves (no copy). That is safe only while nothing
  writes into those tensors before the pump reads them, so it is deferred only when: the loop sets grads to
  None before the next backward (the Trainer does), the optimizer is one of torch's own (they do not write
  into ``p.grad``; ``differentiable=True`` groups excluded), no GradScaler unscales in place, no user hook
  runs between backward and the optimizer step (OnTheFly's own hooks only read), and the gradients are
  small enough (``MAX_DEFERRED_GRAD_ELEMENTS``) that holding a few steps' worth costs little memory.
  Otherwise the norm is computed on the training thread, as before.

Anything not deferrable is computed right away, exactly as without this module.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np
import torch

from onthefly.runtime.hooks import RunHook

MAX_DEFERRED_GRAD_ELEMENTS = 1 << 21  # 8 MB of float32 gradients per step


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


class LaterGradNorm:
    """The global L2 norm of one step's gradients, computed when read."""

    __slots__ = ("grads", "result")

    def __init__(self, grads: list[torch.Tensor]) -> None:
        self.grads = grads
        self.result: float | None = None

    def value(self) -> float:
        if self.result is None:
            with torch.no_grad():
                self.result = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.grads))))
            self.grads = []
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
        for v, part in zip(group, torch.split(out, sizes)):
            v.result = _per_row(part, part.shape[0])
            v.pred = v.target = None  # type: ignore[assignment]


def builtin_loss(fn: Any) -> bool:
    """A loss module of torch itself (``nn.CrossEntropyLoss()``, ...): a pure, thread-safe function."""
    owner = fn.__self__ if hasattr(fn, "__self__") else fn
    return isinstance(owner, torch.nn.modules.loss._Loss) and type(owner).__module__.startswith("torch.nn.")


def can_defer_sample_losses(pred: Any, target: Any) -> bool:
    return (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and pred.device.type == "cpu"
            and target.device.type == "cpu" and pred.dim() >= 1 and target.dim() >= 1)


def can_defer_grad_norm(device: torch.device, optimizer: Any, scaler: Any, hooks: Iterable[RunHook],
                        params: list[torch.Tensor]) -> bool:
    """Whether this loop's gradients stay untouched from backward until the pump reads them (see above)."""
    if device.type != "cpu" or scaler is not None:
        return False
    if not type(optimizer).__module__.startswith("torch.optim."):
        return False
    if any(group.get("differentiable", False) for group in optimizer.param_groups):
        return False
    for hook in hooks:
        impl = type(hook).on_before_optimizer_step
        if impl is not RunHook.on_before_optimizer_step and not impl.__module__.startswith("onthefly."):
            return False
    return sum(p.numel() for p in params) <= MAX_DEFERRED_GRAD_ELEMENTS
