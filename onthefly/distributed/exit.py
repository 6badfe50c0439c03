"""Collect a distributed job's garbage before the interpreter starts finalizing.

Why: a gloo process group runs each collective on a worker thread that drops its reference to the
finished ``Work`` a moment after the training thread's ``wait()`` returns. When that reference is the
last one, destroying the Work frees its tensors, and a tensor whose Python object has already gone
takes the GIL to release it. Once ``Py_FinalizeEx`` has begun, a thread taking the GIL is made to exit
(``pthread_exit``) inside that C++ destructor, and the forced unwind ends the process with
"terminate called without an active exception" (SIGABRT) after training has finished well. The
window is the time the interpreter spends finalizing, which grows with everything a run has imported
(gRPC, protobuf, ours): a core of such an abort shows the main thread in ``Py_FinalizeEx`` ->
``PyGC_Collect`` and the gloo worker in ``~AsyncAllgatherCoalescedWork`` -> ``take_gil``.

A model wrapped by FSDP2 lives in reference cycles (FSDP2's own), as do a run's objects (the loop
context, the run, its event history), so they are freed only by a garbage collection; left to the
interpreter, that is the final one, during finalization, which it makes longer. An ``atexit`` handler runs
before finalization begins: collecting there frees them while threads may still take the GIL, and
shortens the final collection. Nothing of the run's results changes; the collection would have happened
anyway, a moment later.

The process group itself is not always freed there: torch keeps it (and its worker threads) alive to the
end even after ``destroy_process_group()`` (measured: the ``pt_gloo_runloop`` threads are still there
after the collection, in a bare FSDP2 loop too). So the handler then also waits, with the GIL released,
until no gloo worker thread is running or runnable (Linux: ``/proc/self/task``; at most ``SETTLE_SECONDS``),
so that a worker still holding the script's last Work drops it while the GIL may still be taken. This
narrows the race (a torch one: a bare loop has it too, with a shorter finalization) but cannot close it
where the state of threads cannot be read.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
import time

SETTLE_SECONDS = 2.0  # at most this long at exit for gloo's worker threads to go idle
_POLL_SECONDS = 0.002
_WORKER_THREADS = ("pt_gloo_runloop",)  # the name torch gives the threads of ProcessGroupGloo::runLoop

_lock = threading.Lock()
_registered = False


def collect_before_exit() -> None:
    """Once per process: at interpreter exit, before finalization, collect reference cycles (idempotent)."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    # atexit runs handlers last-registered first: this one runs before those torch registered at import.
    atexit.register(_before_finalization)


def _before_finalization() -> None:
    gc.collect()
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        time.sleep(_POLL_SECONDS)  # releases the GIL: a worker waiting for it frees its last Work now
        if not busy_collective_workers() or time.monotonic() > deadline:
            return


def busy_collective_workers() -> int:
    """How many of gloo's worker threads in this process are running or runnable (0 where /proc is absent)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    busy = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread has just ended
            continue
        # "tid (name) state ...": the name may hold spaces and parentheses, so split at the last ")".
        name, state = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2:stat.rfind(")") + 3]
        if name in _WORKER_THREADS and state == "R":
            busy += 1
    return busy
