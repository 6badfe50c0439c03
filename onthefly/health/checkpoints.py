"""Checkpoints: scheduled checkpoints that could not be written (a full disk), as a standing finding.

The sessions hook notes each failure here when it happens (it also publishes a WARNING log event then);
the check reports them whenever a client asks, so a failure that scrolled past is still found later.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext

KEY = "health.checkpoint_failures"


@dataclass(frozen=True, slots=True)
class Failure:
    step: int
    reason: str  # what the checkpoint was for: "schedule", "test"
    error: str


class CheckpointFailures:
    """Failed checkpoints of one run, noted on the training thread and read by the check (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Failure] = []

    def note(self, failure: Failure) -> None:
        with self._lock:
            self._items.append(failure)

    def all(self) -> list[Failure]:
        with self._lock:
            return list(self._items)


def track(ctx: "LoopContext") -> None:
    """Called by a hook that takes checkpoints in this run, at fit start: the check has something to report."""
    ctx.extras.setdefault(KEY, CheckpointFailures())


def note_failure(ctx: "LoopContext", reason: str, error: str) -> None:
    """Record that the ``reason`` checkpoint at the current step was not written, for the check to report."""
    ctx.extras.setdefault(KEY, CheckpointFailures()).note(Failure(ctx.step, reason, error))


def check(inp: CheckInput) -> list[Finding]:
    out = Findings("checkpoints")
    failures = inp.ctx.extras.get(KEY)
    if failures is None:
        raise ProbeUnavailable("this run takes no checkpoints (sessions are off)")
    items = failures.all()
    if not items:
        out.info("every checkpoint taken so far was written")
        return out.items
    last = items[-1]
    steps = ", ".join(str(f.step) for f in items[-5:])
    out.warning(f"{len(items)} checkpoint(s) could not be written (steps {steps}{', ...' if len(items) > 5 else ''}); "
                f"the last: {last.error}. Training went on without them: free space in the store "
                "(or point Sessions(store=...) at a larger disk) so that the next one is kept",
                "store", failed=len(items), last_step=last.step)
    return out.items
