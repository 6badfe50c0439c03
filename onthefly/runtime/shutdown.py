"""The end of a run, in the one order both loops (native Trainer, Lightning callback) need."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.log_capture import LogCapture
    from onthefly.runtime.run import Run
    from onthefly.runtime.stats import StatsSampler


def end_run(run: "Run", ctx: "LoopContext", error: BaseException | None, *, stats: "StatsSampler | None",
            job: Any, capture: "LogCapture | None", server: Any, grace: float,
            after_end: Iterable[Callable[[], None]] = (), hold: float = 0.0) -> None:
    """Stop the stats sampler, leave the distributed job, end the run (``after_end`` runs right after),
    close log capture and the bus, then stop the server once subscribers have left (or ``grace`` passed).
    ``hold``: seconds the server keeps answering calls after that (rank 0 of a failed distributed run:
    time for a client to see why and export what the run has)."""
    if stats is not None:
        stats.stop()  # first: a sample published after FINISHED would make it not the run's final event
    if job is not None:
        job.close(grace, error)
    run.end(ctx, error)
    for step in after_end:
        step()
    if capture is not None:
        capture.close()
    run.bus.close()
    if server is not None:
        left = run.bus.wait_for_subscribers_to_leave(grace)
        if hold > 0:
            threading.Event().wait(hold)
        # A subscriber that stopped reading would hold stop() for the whole grace: abort it now.
        server.stop(grace=grace if left else 0.1)
