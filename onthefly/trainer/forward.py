"""One forward pass as the user defines it: the loss backward runs on, plus per-sample losses.

By default a batch is ``(inputs..., target)`` or a dict with a target key (``target``, ``targets``,
``label``, ``labels`` or ``y``); the model gets the rest. A user ``step_fn(model, batch, loss_fn)``
handles any other shape and returns a loss tensor, ``(pred, target)``, or a ``StepOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from onthefly.runtime.per_sample import PerSampleLoss

TARGET_KEYS = ("target", "targets", "label", "labels", "y")


@dataclass
class StepOutput:
    """What a step function may return. ``per_sample_loss`` (shape [B]) enables per-sample telemetry."""

    loss: torch.Tensor
    per_sample_loss: torch.Tensor | None = None
    pred: Any = None
    target: Any = None


def split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        for key in TARGET_KEYS:
            if key in batch:
                inputs = {k: v for k, v in batch.items() if k != key}
                return inputs, batch[key]
        raise TypeError(
            f"a dict batch needs one of the keys {TARGET_KEYS} for the target (got {sorted(batch)}); "
            "or pass step_fn=... to Trainer.fit to compute the loss yourself"
        )
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return tuple(batch[:-1]), batch[-1]
    raise TypeError(
        f"cannot split a batch of type {type(batch).__name__} into inputs and target; "
        "yield (inputs, target) from your DataLoader or pass step_fn=... to Trainer.fit"
    )


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(next(iter(inputs.values()))) if len(inputs) == 1 else model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def to_device(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_device(v, device, non_blocking) for v in value)
    return value


class Forward:
    """Computes a StepOutput for a batch; used for training and for evaluation."""

    def __init__(
        self,
        loss_fn: Callable[..., torch.Tensor] | None,
        step_fn: Callable[..., Any] | None = None,
        per_sample: bool = True,
    ) -> None:
        if loss_fn is None and step_fn is None:
            raise TypeError("Trainer.fit needs loss_fn=... (e.g. nn.CrossEntropyLoss()) or step_fn=...")
        self.loss_fn = loss_fn
        self.step_fn = step_fn
        self.per_sample = PerSampleLoss(loss_fn) if (per_sample and loss_fn is not None) else None

    def __call__(self, model: Any, batch: Any) -> StepOutput:
        if self.step_fn is not None:
            out = self.step_fn(model, batch, self.loss_fn)
            if isinstance(out, StepOutput):
                return out
            if isinstance(out, torch.Tensor):
                return StepOutput(out)
            if isinstance(out, (tuple, list)) and len(out) == 2:
                pred, target = out
            else:
                raise TypeError(
                    "step_fn must return a loss tensor, (pred, target), or onthefly.StepOutput; "
                    f"got {type(out).__name__}"
                )
        else:
            inputs, target = split_batch(batch)
            pred = call_model(model, inputs)
        if self.loss_fn is None:
            raise TypeError("step_fn returned (pred, target) but no loss_fn was given to Trainer.fit")
        loss = self.loss_fn(pred, target)
        # In the step, on purpose: handing copies to the bus's pump thread was tried and was not faster on
        # CPU (the pump then competes with training for the GIL and the cores).
        per_sample = self.per_sample.of_loss(loss, pred, target) if self.per_sample is not None else None
        return StepOutput(loss, per_sample, pred, target)
