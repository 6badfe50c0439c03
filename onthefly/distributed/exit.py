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

A model wrapped by FSDP2 (and the process group its mesh holds) lives in reference cycles, so it is only
freed by a garbage collection; left to the interpreter, that is the final one, during finalization. An
``atexit`` handler runs before finalization begins: collecting there destroys the process group while
threads may still take the GIL (its destructor releases the GIL and joins its workers), so every worker
has dropped its last Work before finalization starts. Nothing of the run's results changes; the
collection would have happened anyway, a moment later.
"""

from __future__ import annotations

import atexit
import gc
import threading

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
    atexit.register(gc.collect)
