"""The control state machine: commands queued from any thread, applied at step boundaries.

The training thread calls ``boundary(ctx)`` after every optimizer step (and once before the first).
When nothing is queued and the run is not paused, that is one attribute check. While paused, the
training thread waits on a condition inside ``boundary`` and applies commands as they arrive, and runs
the tasks left for a pause that lasts (``when_pause_settles``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from onthefly.runtime.commands import Command, PendingCommand, Receipt, ReceiptStatus
from onthefly.runtime.errors import FailedPrecondition, OnTheFlyError, one_line
from onthefly.runtime.events import CommandApplied, EventKind, Lifecycle, LifecycleKind, RunState

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.run import Run

log = logging.getLogger("onthefly")

_TERMINAL = (RunState.FINISHED, RunState.FAILED)


class Control:
    """Run state plus the command queue. ``submit`` is safe to call from any thread."""

    def __init__(self, run: "Run") -> None:
        self._run = run
        self._cond = threading.Condition()
        self._queue: collections.deque[PendingCommand] = collections.deque()
        self._next_id = 1
        self.state = RunState.STARTING
        self.stop_requested = False
        self.skip_test = False
        self.pending_steps = 0  # >0: run this many more steps, then pause
        self.error = ""
        self.ctx: "LoopContext | None" = None  # bound by the training loop before the server starts
        self._settle: list[tuple[float, Callable[[], None]]] = []  # (due, task) for this pause, by due time

    @property
    def optimizer(self):
        if self.ctx is None:
            raise FailedPrecondition("the run has not started training yet; try again once fit() is running")
        return self.ctx.optimizer

    def has_loader(self, split: str) -> bool:
        return self.ctx is not None and getattr(self.ctx, f"{split}_loader", None) is not None

    # -- any thread ------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in _TERMINAL

    @property
    def has_work(self) -> bool:
        """True when a boundary has something to do: a command is queued or the run is paused."""
        return bool(self._queue) or self.state is RunState.PAUSED

    def submit(self, command: Command) -> PendingCommand:
        """Validate ``command`` on the caller's thread and queue it; raises on bad input."""
        with self._cond:
            if self.finished:
                raise FailedPrecondition(
                    f"the run has {self.state.name.lower()}; it accepts no more '{command.name}' commands"
                )
            command.check(self)
            pending = PendingCommand(self._next_id, command)
            self._next_id += 1
            self._queue.append(pending)
            self._cond.notify_all()
            return pending

    # -- training thread -------------------------------------------------------------------------
    def boundary(self, ctx: "LoopContext", max_wait: float | None = None) -> bool:
        """Apply queued commands; block while paused. Returns True when the loop must stop.

        With ``max_wait``, a paused loop returns after that many seconds without a command, still
        paused (the caller reads ``state``): a distributed loop uses it to keep its peers informed.
        It also returns as soon as a command changes the state, before applying the ones queued
        behind it, so that peers see every pause (a Step queued right behind a Pause comes next call).
        """
        if not self._queue and self.state is not RunState.PAUSED:
            return self.stop_requested
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            changed = self._apply_queued(ctx, until_state_change=max_wait is not None)
            if self.stop_requested or self.state is not RunState.PAUSED or changed:
                return self.stop_requested
            self._run_settled()
            with self._cond:
                while not self._queue:
                    now = time.monotonic()
                    left = 0.5 if deadline is None else min(0.5, deadline - now)
                    if self._settle:
                        if self._settle[0][0] <= now:
                            break  # a settled pause's task is due
                        left = min(left, self._settle[0][0] - now)
                    if left <= 0:
                        return self.stop_requested
                    self._cond.wait(left)  # timed so Ctrl-C still reaches a paused main thread

    def when_pause_settles(self, task: Callable[[], None], seconds: float) -> None:
        """Run ``task()`` on the training thread once the current pause has lasted ``seconds``; dropped
        if the run leaves the pause first. For work a pause should not wait for (a checkpoint): a pause
        that ends at once (a pause and resume from a dashboard, each stop of ``step N``) never pays for
        it, and the Pause receipt goes out before it starts instead of competing with it for the GIL.
        With ``seconds <= 0`` it runs now, before anything queued behind the pause."""
        if seconds <= 0:
            _run_task(task)
            return
        self._settle.append((time.monotonic() + seconds, task))
        self._settle.sort(key=lambda item: item[0])

    def _run_settled(self) -> None:
        now = time.monotonic()
        while self._settle and self._settle[0][0] <= now and self.state is RunState.PAUSED:
            _run_task(self._settle.pop(0)[1])

    def step_done(self, ctx: "LoopContext") -> None:
        """Count down a StepRequest budget; pause when it is spent."""
        if self.pending_steps > 0:
            self.pending_steps -= 1
            if self.pending_steps == 0:
                self.enter_pause(ctx, "step budget spent")

    def enter_pause(self, ctx: "LoopContext", why: str) -> None:
        if self.state is RunState.PAUSED:
            return
        self.state = RunState.PAUSED
        self._run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.PAUSED, self.state, why))
        self._run.hooks.on_pause(ctx)

    def leave_pause(self, ctx: "LoopContext", why: str) -> None:
        if self.state is not RunState.PAUSED:
            return
        self.state = RunState.RUNNING
        self._settle.clear()
        self._run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.RESUMED, self.state, why))

    def _apply_queued(self, ctx: "LoopContext", until_state_change: bool = False) -> bool:
        """Apply queued commands in order; True when it stopped early at a state change."""
        while True:
            with self._cond:
                if not self._queue:
                    return False
                pending = self._queue.popleft()
            before = self.state
            self._apply(pending, ctx)
            if until_state_change and self.state is not before and self._queue:
                return True

    def _apply(self, pending: PendingCommand, ctx: "LoopContext") -> None:
        command = pending.command
        try:
            result = command.apply(ctx)
        except OnTheFlyError as exc:  # written for a person already
            self._finish(pending, False, str(exc), ctx.step)
            return
        except Exception as exc:  # a failing command must not kill the run
            self._finish(pending, False, f"{type(exc).__name__}: {exc}", ctx.step)
            return
        self._finish(pending, True, command.describe(result), ctx.step, result)

    def _finish(self, pending: PendingCommand, applied: bool, detail: str, step: int, result=None) -> None:
        status = ReceiptStatus.APPLIED if applied else ReceiptStatus.REJECTED
        detail = one_line(detail)
        receipt = Receipt(pending.command_id, status, step, "" if applied else detail)
        self._run.publish(EventKind.COMMAND, CommandApplied(pending.command_id, pending.command.name, applied, detail))
        pending.finish(receipt, result)

    def reject_all(self, reason: str, step: int) -> None:
        """At the end of the run: refuse whatever is still queued, so no caller waits forever."""
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
        for pending in queued:
            self._finish(pending, False, reason, step)


def _run_task(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception as exc:  # a failing task must not kill the run; the pause goes on
        log.warning("onthefly: a task for the paused run failed: %s: %s", type(exc).__name__, exc)
