"""RunHealthCheck: the health checks as one steering command, applied at a step boundary.

Running on the training thread between two steps means the checks see a consistent model (no
optimizer step half done) and need no locks; they hold the loop only while they run, and every probe
restores RNG state, gradients, buffers and module modes, so training numbers are unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from onthefly.health.checks import CHECKS
from onthefly.health.findings import Finding, HealthReport, Severity
from onthefly.health.inputs import CheckInput
from onthefly.health.monitor import monitor_of
from onthefly.health.probe import ProbeUnavailable
from onthefly.runtime.commands import Command
from onthefly.runtime.errors import InvalidArgument
from onthefly.runtime.events import EventKind, LogRecord

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control

DEFAULT_BATCHES = 4
MAX_BATCHES = 64
_LOG_LEVEL = {Severity.WARNING: logging.WARNING, Severity.ERROR: logging.ERROR}


class RunHealthCheck(Command):
    """Run ``checks`` (all when empty); the result is a HealthReport."""

    name = "health_check"

    def __init__(self, checks: list[str] | None = None, batches: int = 0) -> None:
        self.checks = list(dict.fromkeys(checks or CHECKS))  # each once, in the order asked
        self.batches = batches or DEFAULT_BATCHES

    def check(self, control: "Control") -> None:
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise InvalidArgument(f"unknown health check '{unknown[0]}'; choose from {', '.join(CHECKS)} "
                                  "(or name none to run them all)")
        if not 1 <= self.batches <= MAX_BATCHES:
            raise InvalidArgument(f"batches must be between 1 and {MAX_BATCHES} (0 means {DEFAULT_BATCHES}), "
                                  f"got {self.batches}")

    def apply(self, ctx: "LoopContext") -> HealthReport:
        started = time.perf_counter()
        ctx.run.bus.drain()  # the monitor sees every step published so far, the last one included
        inp = CheckInput(ctx, monitor_of(ctx), self.batches)
        findings: list[Finding] = []
        for name in self.checks:
            try:
                findings.extend(CHECKS[name].run(inp))
            except ProbeUnavailable as exc:
                findings.append(Finding(name, Severity.INFO, f"skipped: {exc}"))
            except Exception as exc:  # one broken check must not hide the others or kill the run
                findings.append(Finding(name, Severity.WARNING,
                                        f"the check could not run: {type(exc).__name__}: {exc}"))
        report = HealthReport(findings, ctx.step, time.perf_counter() - started)
        for f in findings:
            if f.severity > Severity.INFO:
                ctx.run.publish(EventKind.LOG, LogRecord(_LOG_LEVEL[f.severity], "onthefly.health",
                                                         f"{f.check}: {f.message}"))
        return report

    def describe(self, result: Any) -> str:
        counts = result.counts()
        return (f"health: {len(self.checks)} check(s), {counts[Severity.ERROR]} error(s), "
                f"{counts[Severity.WARNING]} warning(s) in {result.held_seconds:.2f}s")
