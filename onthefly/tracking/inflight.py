"""Closing without losing a row to a racing thread, at no cost to the logging hot path.

A logging call reads the experiment's buffer into a local (``q = self._q``), checks a threshold and
appends. Closing swaps every builder's buffer for a :class:`~onthefly.tracking.writer.Refusing` one, but a
thread that read the old buffer just before the swap appends to it a moment later; if the writer has
already stopped by then, that row is lost although the call returned normally. So after the swap, and
before the writer stops, :func:`wait_for_loggers` waits until no other thread is inside a logging call of
this experiment that still holds the old buffer (found by looking at the threads' frames).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import warnings
from typing import Any, Iterable

from onthefly.tracking.writer import Refusing


def _holds_live_buffer(frame, codes: frozenset, exp: Any) -> bool:
    while frame is not None:
        if frame.f_code in codes:
            local = frame.f_locals
            owner = local.get("self")
            if owner is exp or getattr(owner, "_exp", None) is exp:
                return not isinstance(local.get("q"), Refusing)
        frame = frame.f_back
    return False


def _current_frames() -> dict:
    """sys._current_frames() with the collector off: in CPython 3.11 a collection that starts inside it
    (while it holds the runtime's thread-list lock) can run a finalizer that needs that lock, and the process
    deadlocks (python/cpython#106883; seen here with a few hundred live threads)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        if enabled:
            gc.enable()


def wait_for_loggers(exp: Any, functions: Iterable[Any], timeout: float = 10.0) -> bool:
    """Wait until no thread but this one is inside one of ``functions`` (logging calls) for ``exp`` with the
    buffer it read before the swap. True when none is; False (with a warning) after ``timeout`` seconds."""
    codes = frozenset(f.__code__ for f in functions)
    me = threading.get_ident()
    deadline = time.monotonic() + timeout
    delay = 0.0001
    while True:
        busy = [ident for ident, frame in _current_frames().items()
                if ident != me and _holds_live_buffer(frame, codes, exp)]
        if not busy:
            return True
        if time.monotonic() > deadline:
            warnings.warn(f"onthefly.tracking: {len(busy)} thread(s) were still inside a logging call of "
                          f"{exp.prefix!r} {timeout:.0f}s after it was closed; a row they log now may be lost",
                          RuntimeWarning, stacklevel=3)
            return False
        time.sleep(delay)  # let them run to the end of the call
        delay = min(delay * 2, 0.01)
