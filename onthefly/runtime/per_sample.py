"""Per-sample loss for any loss function, computed beside (never instead of) the user's loss.

The user's loss_fn produces the value backward runs on, exactly as in a plain loop. The per-sample
vector is computed separately under no_grad from detached predictions, so gradients, RNG and
numerics are untouched. Strategies, in order:

0. in a training step whose loss ends in ``nll_loss`` (``nn.CrossEntropyLoss`` with class targets, ``NLLLoss``,
   ``F.cross_entropy``): ``nll_loss(reduction='none')`` of what that node saved for backward (the same values
   as strategy 1, without a second log-softmax);
1. an ``nn.Module`` loss with a ``reduction`` attribute: a shallow copy with ``reduction='none'``;
2. a callable whose signature takes ``reduction``: called with ``reduction='none'``;
3. otherwise ``torch.func.vmap`` over the batch dimension (one sample at a time, vectorised);
4. otherwise a Python loop over samples (slow; chosen once and reported).

Any result with extra dimensions is averaged over them, giving one value per sample.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any, Callable

import torch
import torch.nn.functional as F

log = logging.getLogger("onthefly")

# The autograd nodes of nll_loss (where CrossEntropyLoss with class-index targets ends): each saved its
# log-probabilities, target, weight and ignore_index for backward.
_NLL_NODES = frozenset(("NllLossBackward0", "NllLoss2DBackward0"))


def detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: detach(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detach(v) for v in value)
    return value


def _reduce_to_batch(values: torch.Tensor, batch: int) -> torch.Tensor:
    if values.dim() == 0:
        return values.expand(batch)
    if values.dim() > 1:
        values = values.reshape(values.shape[0], -1).mean(dim=1)
    return values


def _batch_size(target: Any) -> int:
    if isinstance(target, torch.Tensor):
        return target.shape[0]
    if isinstance(target, dict):
        return _batch_size(next(iter(target.values())))
    if isinstance(target, (list, tuple)):
        return _batch_size(target[0])
    return len(target)


class PerSampleLoss:
    """Callable (pred, target) -> 1-D tensor of per-sample losses, on pred's device, no grad."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor]) -> None:
        self.loss_fn = loss_fn
        self.strategy = "unknown"
        self._fn: Callable[[Any, Any], torch.Tensor] | None = None
        self._from_graph = True  # read per-sample values off the loss's graph when it allows (see of_loss)
        self._pick()

    def _pick(self) -> None:
        fn = self.loss_fn
        if isinstance(fn, torch.nn.Module) and hasattr(fn, "reduction"):
            clone = copy.copy(fn)
            clone.reduction = "none"
            # forward() directly: the per-step Module.__call__ machinery costs as much as the loss itself.
            self._fn, self.strategy = clone.forward, "reduction='none' copy"
            return
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "reduction" in params:
            self._fn, self.strategy = (lambda p, t: fn(p, t, reduction="none")), "reduction='none' argument"
            return
        self._fn, self.strategy = None, "vmap"

    def of_loss(self, loss: torch.Tensor, pred: Any, target: Any) -> torch.Tensor:
        """Per-sample losses of a step whose ``loss`` is ``loss_fn(pred, target)``, before its backward.

        When the loss ends in ``nll_loss`` (CrossEntropyLoss does), that node saved exactly what it reduced:
        one ``nll_loss(reduction='none')`` over the same inputs gives the per-sample values, bit for bit
        what a ``reduction='none'`` copy returns, without computing the log-softmax a second time. Any other
        graph takes the general path."""
        if self._from_graph:
            node = loss.grad_fn
            if node is not None and type(node).__name__ in _NLL_NODES:
                try:
                    ignore = node._saved_ignore_index
                    if ignore >= 1 << 63:  # read back as an unsigned 64-bit value (the default -100 included)
                        ignore -= 1 << 64
                    values = F.nll_loss(node._saved_self.detach(), node._saved_target, weight=node._saved_weight,
                                        ignore_index=ignore, reduction="none")
                except (RuntimeError, AttributeError, TypeError):
                    self._from_graph = False
                else:
                    if values.dim() and values.shape[0] == _batch_size(target):
                        return _reduce_to_batch(values, values.shape[0])
                    self._from_graph = False  # a graph of another shape: the general path from now on
        return self(detach(pred), target)

    def __call__(self, pred: Any, target: Any) -> torch.Tensor:
        """``pred`` must be detached (the trainer passes detached predictions), so no graph is built."""
        batch = _batch_size(target)
        if self._fn is not None:
            return _reduce_to_batch(self._fn(pred, target), batch)
        with torch.no_grad():
            return self._fallback(pred, target, batch)

    def _fallback(self, pred: Any, target: Any, batch: int) -> torch.Tensor:
        fn = self.loss_fn
        if self.strategy == "vmap":
            try:
                single = lambda p, t: fn(p.unsqueeze(0), t.unsqueeze(0))  # noqa: E731
                return _reduce_to_batch(torch.func.vmap(single)(pred, target), batch)
            except Exception as exc:  # not vmappable (data-dependent control flow, dict outputs, ...)
                log.info("onthefly: per-sample loss falls back to a per-sample loop (%s)", exc)
                self.strategy = "loop"
        values = [fn(_take(pred, i), _take(target, i)).reshape(-1).mean() for i in range(batch)]
        return torch.stack(values)


def _take(value: Any, i: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value[i : i + 1]
    if isinstance(value, dict):
        return {k: _take(v, i) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_take(v, i) for v in value)
    return value
