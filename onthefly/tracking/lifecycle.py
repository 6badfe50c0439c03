"""How a process's end becomes an experiment's final status, beyond what ``with exp.run`` sees.

- SIGTERM (``kill``, a scheduler's preemption): every live experiment is flushed and recorded CANCELLED,
  then the signal goes on to any handler the program installed, or ends the process as before.
- ``sys.exit(code)`` with a non-zero code: recorded FAILED at exit (``atexit`` alone cannot see the code).
"""

from __future__ import annotations

import sys
import threading
from typing import Callable

from onthefly import sigterm

_lock = threading.Lock()
_installed = False
exit_code: object = None  # the argument of the last sys.exit() call, if any


def install(close_all: Callable[[str], None]) -> None:
    """Once per process: route SIGTERM to ``close_all(reason)`` and remember sys.exit's code."""
    global _installed
    with _lock:
        sigterm.add(_callback(close_all))  # again each time: a SIGTERM already handled unregistered it
        if _installed:
            return
        _installed = True
        original = sys.exit

        def exit(code: object = None) -> None:
            global exit_code
            exit_code = code
            original(code)

        exit.__doc__ = original.__doc__
        sys.exit = exit


_callbacks: dict = {}


def _callback(close_all: Callable[[str], None]) -> Callable[[], None]:
    cb = _callbacks.get(close_all)
    if cb is None:
        def cb() -> None:
            close_all("SIGTERM")

        _callbacks[close_all] = cb
    return cb


def failed_exit() -> str:
    """'exited with status N' if the program called sys.exit with a failing code, else ''."""
    code = exit_code
    if code is None or code == 0:
        return ""
    return f"exited with status {code}" if isinstance(code, int) else f"exited: {code}"
