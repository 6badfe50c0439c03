"""Run clean-up on SIGTERM, then let the signal do what it did before.

``kill PID`` (a scheduler's preemption, ``docker stop``) ends a Python process without ``atexit``.
Callbacks registered here run first (remove a discovery file, flush and mark a tracked experiment
CANCELLED); then the handler that was installed before ours is called, or, if there was none, the
process ends by SIGTERM as it would have without us (exit status 128+15). A handler can only be
installed from the main thread; elsewhere registering is a no-op and ``atexit`` remains the fallback.

Callbacks belong to the process that registered them. A forked child (a multiprocessing pool's worker, a
DataLoader worker) inherits the handler but none of the callbacks: when its parent terminates it with
SIGTERM, it ends as SIGTERM would have, and never removes the parent's discovery file or closes the
parent's experiments.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

log = logging.getLogger("onthefly")

_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()
_previous = None
_installed = False
_owner = os.getpid()  # the process whose callbacks these are


def add(callback: Callable[[], None]) -> None:
    """Call ``callback()`` (once) when the process receives SIGTERM; newest first."""
    global _installed, _previous
    with _lock:
        if callback not in _callbacks:
            _callbacks.append(callback)
        if _installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            _previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _handle)
            _installed = True
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter thread
            pass


def remove(callback: Callable[[], None]) -> None:
    with _lock:
        if callback in _callbacks:
            _callbacks.remove(callback)


def _handle(signum, frame) -> None:
    with _lock:
        # A child forked outside Python's os.fork (no at-fork hook ran) still holds its parent's list.
        callbacks = list(reversed(_callbacks)) if os.getpid() == _owner else []
        _callbacks.clear()
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:  # clean-up must not stop the others or the signal
            log.warning("onthefly: clean-up on SIGTERM failed: %s: %s", type(exc).__name__, exc)
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): end as SIGTERM would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _forget_in_child() -> None:
    """After a fork: the child's callbacks start empty (the handler stays, chained as before)."""
    global _owner, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _callbacks.clear()
    _owner = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
