"""Steering commands: queued by any thread, applied on the training thread at a step boundary.

A Command subclass implements ``check`` (runs on the caller's thread before queueing: raise
InvalidArgument / FailedPrecondition for bad input) and ``apply`` (runs on the training thread with
the loop context; raise CommandRejected to refuse). Other features add commands by subclassing;
the control state machine needs no change.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control


class ReceiptStatus(enum.IntEnum):
    ACCEPTED = 1
    APPLIED = 2
    REJECTED = 3


@dataclass(frozen=True, slots=True)
class Receipt:
    command_id: int
    status: ReceiptStatus
    applied_step: int = -1
    reason: str = ""


class Command:
    """Base class of a steering command. ``name`` appears in events and receipts."""

    name = "command"

    def check(self, control: "Control") -> None:
        """Validate on the caller's thread; raise InvalidArgument / FailedPrecondition."""

    def apply(self, ctx: "LoopContext") -> Any:
        """Run on the training thread at a step boundary; the return value becomes the result."""
        raise NotImplementedError

    def describe(self, result: Any) -> str:
        """One line saying what the command did, for the CommandApplied event."""
        return ""


class PendingCommand:
    """A queued command; ``wait`` blocks the caller (never the training thread) until it is handled."""

    def __init__(self, command_id: int, command: Command) -> None:
        self.command_id = command_id
        self.command = command
        self.result: Any = None
        self._receipt = Receipt(command_id, ReceiptStatus.ACCEPTED)
        self._done = threading.Event()

    def finish(self, receipt: Receipt, result: Any = None) -> None:
        self.result = result
        self._receipt = receipt
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Receipt:
        """Receipt once applied or rejected; ACCEPTED if ``timeout`` passes first."""
        self._done.wait(timeout)
        return self._receipt
