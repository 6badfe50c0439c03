"""HealthMonitor: what checks need to know about the steps already taken.

It watches the bus (recent step timings and losses, GPU utilisation) on the pump thread, so the
training thread pays nothing for it; with an AMP grad scaler it also counts overflow steps (a step
whose scale went down) with one device-side comparison per step and no host sync.
"""

from __future__ import annotations

import collections
import math
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onthefly.runtime.events import EventKind
from onthefly.runtime.hooks import RunHook

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.run import Run

KEY = "health.monitor"
_INSTALLED: "weakref.WeakKeyDictionary[Run, HealthMonitor]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class StepSample:
    step: int
    loss: float
    step_seconds: float
    data_seconds: float
    samples_per_second: float
    batch_size: int


def _scaler_scale(ctx: "LoopContext") -> Any:
    scaler = ctx.scaler
    if scaler is None or not getattr(scaler, "is_enabled", lambda: False)():
        return None
    return getattr(scaler, "_scale", None)


class HealthMonitor(RunHook):
    """Recent step samples, GPU utilisation and AMP overflow counts of one run. Read from any thread."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self._steps: collections.deque[StepSample] = collections.deque(maxlen=window)
        self._gpu_util: collections.deque[float] = collections.deque(maxlen=120)
        self.steps_seen = 0
        self.nonfinite_losses = 0
        self.last_loss = math.nan
        self.amp_steps = 0
        self._overflows: Any = None  # device tensor; summed without a host sync
        self._scale_before: Any = None

    # -- pump thread -----------------------------------------------------------------------------
    def observe(self, events: list) -> None:
        with self._lock:
            for event in events:
                if event.kind is EventKind.STEP_METRICS:
                    p = event.payload
                    loss = float(p.loss)
                    self._steps.append(StepSample(event.step, loss, p.step_seconds, p.data_seconds,
                                                  p.samples_per_second, p.batch_size))
                    self.steps_seen += 1
                    self.last_loss = loss
                    if not math.isfinite(loss):
                        self.nonfinite_losses += 1
                elif event.kind is EventKind.RUNTIME_STATS and event.payload.gpus:
                    gpus = event.payload.gpus
                    self._gpu_util.append(sum(g.utilization_percent for g in gpus) / len(gpus))

    def recent_steps(self) -> list[StepSample]:
        with self._lock:
            return list(self._steps)

    def gpu_utilisation(self) -> list[float]:
        with self._lock:
            return list(self._gpu_util)

    # -- training thread -------------------------------------------------------------------------
    def on_fit_start(self, ctx: "LoopContext") -> None:
        ctx.extras[KEY] = self

    def on_before_optimizer_step(self, ctx: "LoopContext", loss: Any) -> bool:
        scale = _scaler_scale(ctx)
        self._scale_before = None if scale is None else scale.detach().clone()
        return True

    def on_step_end(self, ctx: "LoopContext") -> None:
        before, self._scale_before = self._scale_before, None
        scale = _scaler_scale(ctx)
        if before is None or scale is None:
            return
        dropped = (scale < before).long()
        self._overflows = dropped if self._overflows is None else self._overflows + dropped
        self.amp_steps += 1

    def overflow_count(self) -> int:
        """AMP overflow steps so far (reads a device value: call it from a check, not every step)."""
        return 0 if self._overflows is None else int(self._overflows.item())


def install(run: "Run") -> HealthMonitor:
    """Attach a HealthMonitor to ``run`` once (bus observer and run hook); return it."""
    monitor = _INSTALLED.get(run)
    if monitor is None:
        monitor = HealthMonitor()
        _INSTALLED[run] = monitor
        run.bus.observe(monitor.observe)
        run.hooks.add(monitor)
        if run.control.ctx is not None:
            run.control.ctx.extras[KEY] = monitor
    return monitor


def monitor_of(ctx: "LoopContext") -> HealthMonitor | None:
    return ctx.extras.get(KEY) or _INSTALLED.get(ctx.run)
