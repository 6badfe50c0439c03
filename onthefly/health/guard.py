"""NumericsGuard: a run hook the user switches on. Before every optimizer step it checks the loss and
the gradients; a NaN or Inf skips that step (the weights stay as they were), keeps a snapshot of the
weights and optimizer state (in memory, and on disk with ``snapshot_dir``) and pauses the run so a
person can look before anything is corrupted.

    Trainer(..., hooks=[NumericsGuard()])          attach_lightning(..., guard=True)

Cost: one host sync per step (the finiteness of the loss plus the sum of per-tensor gradient norms,
computed on the device in one fused call). Under AMP with a grad scaler, non-finite gradients are the
scaler's business (it skips the step and lowers the scale); the guard then checks the loss only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from onthefly.runtime.events import EventKind, LogRecord
from onthefly.runtime.grad_norm import tensor_norms
from onthefly.runtime.hooks import RunHook

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext

KEY = "health.guard"


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """One skipped step: the step it would have been, why, and where its snapshot went."""

    step: int
    reason: str
    loss: float
    bad_gradients: list[str] = field(default_factory=list)
    snapshot_path: str | None = None


def _cpu_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def _atomic_save(obj: Any, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NumericsGuard(RunHook):
    """Skip, snapshot and pause on a non-finite loss or gradient. ``snapshot`` holds the last snapshot."""

    def __init__(self, *, check_loss: bool = True, check_gradients: bool = True, pause: bool = True,
                 snapshot_dir: str | os.PathLike | None = None) -> None:
        self.check_loss = check_loss
        self.check_gradients = check_gradients
        self.pause = pause
        self.snapshot_dir = pathlib.Path(snapshot_dir) if snapshot_dir is not None else None
        self.trips = 0
        self.last_trip: GuardTrip | None = None
        self.snapshot: dict[str, Any] | None = None
        self._params: list[torch.Tensor] = []
        self._names: dict[int, str] = {}

    def on_fit_start(self, ctx: "LoopContext") -> None:
        ctx.extras[KEY] = self
        self._params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        self._names = {id(p): n for n, p in ctx.model.named_parameters()}

    def on_before_optimizer_step(self, ctx: "LoopContext", loss: Any) -> bool:
        scaler = ctx.scaler
        amp = scaler is not None and getattr(scaler, "is_enabled", lambda: False)()
        terms = []
        if self.check_loss and isinstance(loss, torch.Tensor):
            terms.append(loss.detach().float().sum())
        grads = [p.grad for p in self._params if p.grad is not None] if self.check_gradients and not amp else []
        if grads:
            norms = torch.stack([n.float() for n in tensor_norms(grads)]).sum()
            terms.append(norms.to(terms[0].device) if terms else norms)
        if not terms:
            return True
        total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        if math.isfinite(float(total)):
            return True
        self._trip(ctx, loss, amp)
        return False

    def _trip(self, ctx: "LoopContext", loss: Any, amp: bool) -> None:
        loss_value = float(loss.detach().float().sum()) if isinstance(loss, torch.Tensor) else math.nan
        bad = [] if amp else [self._names.get(id(p), f"param{i}") for i, p in enumerate(self._params)
                              if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if not math.isfinite(loss_value):
            reason = f"non-finite loss ({loss_value})"
        else:
            listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            reason = f"non-finite gradients in {listed}"
        step = ctx.step + 1
        self.snapshot = {
            "step": ctx.step, "epoch": ctx.epoch, "reason": reason,
            "model": _cpu_copy(ctx.model.state_dict()),
            "optimizer": _cpu_copy(ctx.optimizer.state_dict()),
        }
        path = None
        if self.snapshot_dir is not None:
            path = self.snapshot_dir / f"guard-step{step}.pt"
            _atomic_save(self.snapshot, path)
        self.trips += 1
        self.last_trip = GuardTrip(step, reason, loss_value, bad, None if path is None else str(path))
        where = f" (saved to {path})" if path is not None else ""
        message = (f"guard: {reason} at step {step}; the optimizer step was skipped and the weights are "
                   f"unchanged (snapshot kept{where})")
        ctx.run.publish(EventKind.LOG, LogRecord(logging.WARNING, "onthefly.health", message))
        if self.pause:
            control = ctx.run.control
            control.pending_steps = 0
            control.enter_pause(ctx, message + "; inspect it, then resume or stop")


def guard_of(ctx: "LoopContext") -> NumericsGuard | None:
    return ctx.extras.get(KEY)
