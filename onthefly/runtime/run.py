"""Run: one training run's identity, event bus, control state and hooks, tied together."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from onthefly.runtime.bus import EventBus
from onthefly.runtime.control import Control
from onthefly.runtime.events import Event, EventKind, Lifecycle, LifecycleKind, RunIdentity, RunState
from onthefly.runtime.hooks import HookList
from onthefly.runtime import hyperparams
from onthefly.runtime.throughput import ThroughputWindow

# The loop stopped between these and the next step: the throughput window starts afresh.
_THROUGHPUT_BREAKS = frozenset((LifecycleKind.PAUSED, LifecycleKind.RESUMED, LifecycleKind.TEST_STARTED,
                                LifecycleKind.TEST_FINISHED))


def new_run_id(project: str, run_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{project}/{run_name}/{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class StatusSnapshot:
    identity: RunIdentity
    state: RunState
    step: int
    epoch: int
    max_steps: int
    max_epochs: int
    total_steps: int
    last_loss: float
    samples_per_second: float
    hyperparameters: list[tuple[int, dict[str, float]]]
    last_seq: int
    pending_steps: int
    device: str
    error: str


class Run:
    """Everything about one run that outlives a single step. Safe to read from any thread."""

    def __init__(self, project: str, run_name: str, bus: EventBus | None = None) -> None:
        self.identity = RunIdentity(project, run_name, new_run_id(project, run_name), os.getpid())
        self.bus = bus or EventBus()
        self._throughput = ThroughputWindow()
        self.bus.observe(self._observe)
        self.control = Control(self)
        self.hooks = HookList()
        self.step = 0
        self.epoch = 0
        self.max_steps = 0
        self.max_epochs = 0
        self.total_steps = 0
        self.last_loss = math.nan
        self.samples_per_second = 0.0
        self.device = "cpu"
        self._lock = threading.Lock()

    def _observe(self, events: list[Event]) -> None:
        # Runs on the bus's pump thread with resolved values: keep the status figures current. This is
        # the bus's first observer (registered with the bus), so it sets each step's throughput to the
        # run's one definition before any other observer or stream reads the event.
        for event in events:
            kind = event.kind
            if kind is EventKind.STEP_METRICS:
                p = event.payload
                self.last_loss = p.loss
                p.samples_per_second = self.samples_per_second = self._throughput.step(
                    event.time, p.batch_size, p.step_seconds)
            elif kind is EventKind.LIFECYCLE and event.payload.kind in _THROUGHPUT_BREAKS:
                self._throughput.interrupt()

    def publish(self, kind: EventKind, payload: Any) -> None:
        """Non-blocking: hand one event to the bus, stamped with the current step and epoch."""
        self.bus.publish(Event(kind, self.step, self.epoch, time.time(), payload))

    def end(self, ctx: Any, error: BaseException | None) -> None:
        """The loop is over (training thread): record FINISHED or FAILED, reject the commands still
        queued, and tell the hooks. Streams stay open: the caller closes the bus once it has flushed."""
        control = self.control
        if error is None:
            control.state = RunState.FINISHED
            self.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.FINISHED, RunState.FINISHED,
                                                        "stopped on request" if control.stop_requested else ""))
        else:
            control.state = RunState.FAILED
            control.error = f"{type(error).__name__}: {error}"
            self.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.FAILED, RunState.FAILED, control.error))
        control.reject_all(f"the run {control.state.name.lower()} before the command was applied", ctx.step)
        with contextlib.suppress(Exception):
            self.hooks.on_fit_end(ctx, error)

    def status(self) -> StatusSnapshot:
        if self.control.state is RunState.PAUSED:
            # The figures the pump derives (last_loss, throughput) then belong to the step reported: the
            # paused loop publishes nothing, so this drain is the last step's events or nothing.
            self.bus.drain()
        ctx = self.control.ctx
        groups = hyperparams.read_groups(ctx.optimizer) if ctx is not None else []
        return StatusSnapshot(
            identity=self.identity,
            state=self.control.state,
            step=self.step,
            epoch=self.epoch,
            max_steps=self.max_steps,
            max_epochs=self.max_epochs,
            total_steps=self.total_steps,
            last_loss=self.last_loss,
            samples_per_second=self.samples_per_second,
            hyperparameters=groups,
            last_seq=self.bus.last_published_seq,
            pending_steps=self.control.pending_steps,
            device=self.device,
            error=self.control.error,
        )
