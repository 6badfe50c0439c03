"""Forward the user's logging records and (if asked) prints to the run's event stream.

Both paths only format a string and publish it (non-blocking); the user's own handlers and
terminal output are untouched.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from onthefly.runtime.events import EventKind, LogRecord

if TYPE_CHECKING:
    from onthefly.runtime.run import Run


class RunLogHandler(logging.Handler):
    """A logging handler that publishes each record it receives as a LOG event."""

    def __init__(self, run: "Run", level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._run = run

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self._run.publish(EventKind.LOG, LogRecord(record.levelno, record.name, message))
        except Exception:  # a logging handler must never raise into the user's code
            self.handleError(record)


OWN_PREFIX = "onthefly: "


class _Tee:
    """Writes through to the real stream and publishes complete lines."""

    def __init__(self, run: "Run", stream: TextIO, name: str, level: int) -> None:
        self._run, self._stream, self._name, self._level = run, stream, name, level
        self._buffer = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        with self._lock:
            self._buffer += text
            if "\n" in self._buffer:
                *lines, self._buffer = self._buffer.split("\n")
                for line in lines:
                    self._run.publish(EventKind.LOG, self._record(line))
        return written

    def _record(self, line: str) -> LogRecord:
        # OnTheFly's own notices go to stderr ("onthefly: run ... is live on ..."): they are information
        # from the "onthefly" logger, not a warning of the user's.
        if line.startswith(OWN_PREFIX):
            return LogRecord(logging.INFO, "onthefly", line)
        return LogRecord(self._level, self._name, line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class LogCapture:
    """Installs the handler (and the print tees) for the duration of a run; ``close`` undoes it."""

    def __init__(self, run: "Run", capture_logging: bool, capture_prints: bool, logger: str = "") -> None:
        self._run = run
        self._logger = logging.getLogger(logger)
        self._handler = RunLogHandler(run) if capture_logging else None
        self._prints = capture_prints
        self._saved: tuple[TextIO, TextIO] | None = None

    def open(self) -> None:
        if self._handler is not None:
            self._logger.addHandler(self._handler)
        if self._prints:
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout = _Tee(self._run, sys.stdout, "stdout", logging.INFO)  # type: ignore[assignment]
            sys.stderr = _Tee(self._run, sys.stderr, "stderr", logging.WARNING)  # type: ignore[assignment]

    def close(self) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
