"""A validation or test pass on the training thread, invisible to the training trajectory.

The model is put in eval mode and restored to its previous mode; torch's RNG state (CPU and the
current CUDA device) is saved and restored around the pass, so testing mid-run - or adding a
val_loader - never changes the numbers training produces afterwards.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import torch

from onthefly.runtime.events import EvalResult, EventKind, Lifecycle, LifecycleKind, RunState, SampleLosses
from onthefly.runtime.host_values import array_later
from onthefly.runtime.loader_tap import TappedLoader, batch_len
from onthefly.runtime.per_sample import detach
from onthefly.trainer.forward import Forward, to_device

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext


def _accuracy_counts(pred: Any, target: Any) -> tuple[int, int] | None:
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)):
        return None
    if pred.dim() == 2 and pred.shape[1] > 1 and target.dim() == 1 and not target.dtype.is_floating_point:
        return int((pred.argmax(dim=1) == target).sum().item()), int(target.shape[0])
    return None


def _preserved_rng(device: torch.device) -> contextlib.AbstractContextManager:
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def evaluate(ctx: "LoopContext", forward: Forward, split: str, reason: str, autocast: Any) -> EvalResult:
    loader = getattr(ctx, f"{split}_loader")
    run = ctx.run
    control = run.control
    previous_state = control.state
    control.state = RunState.TESTING
    run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.TEST_STARTED, RunState.TESTING, split))
    model = ctx.model
    modes = [(m, m.training) for m in model.modules()]  # each submodule's own: a frozen BatchNorm stays frozen
    started = time.perf_counter()
    total, count, correct, labelled = 0.0, 0, 0, 0
    try:
        model.eval()
        with _preserved_rng(ctx.device), torch.no_grad():
            for batch, indices in TappedLoader(loader):
                batch = to_device(batch, ctx.device)
                with autocast():
                    out = forward(model, batch)
                per_sample = out.per_sample_loss
                n = batch_len(batch) if per_sample is None else int(per_sample.shape[0])
                if per_sample is not None:
                    per_sample = detach(per_sample).float()
                    total += float(per_sample.sum().item())
                    run.publish(EventKind.SAMPLE_LOSSES, SampleLosses(split, indices, array_later(per_sample)))
                else:
                    total += float(out.loss.item()) * n
                count += n
                acc = _accuracy_counts(out.pred, out.target)
                if acc is not None:
                    correct += acc[0]
                    labelled += acc[1]
    finally:
        for module, training in modes:
            module.training = training
        control.state = previous_state if previous_state is not RunState.TESTING else RunState.RUNNING
    metrics = {"accuracy": correct / labelled} if labelled else {}
    result = EvalResult(split, total / count if count else float("nan"), count, metrics,
                        time.perf_counter() - started, reason)
    run.publish(EventKind.EVAL_RESULT, result)
    run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.TEST_FINISHED, control.state, split))
    run.hooks.on_eval_end(ctx, result)
    return result
