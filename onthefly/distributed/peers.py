"""What a rank other than 0 leaves to rank 0: serving, tracking and writing sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.run import Run

# Rank 0 alone hears commands: a session import or restore there would move one rank's weights and
# position and not the others', so it is refused with what to do instead.
LIVE_RESTORE_REFUSED = (
    "this run trains on several ranks; a checkpoint or bundle cannot be swapped into one rank while they run. "
    "Stop the run and start it again with Trainer.fit(..., resume_from=PATH) on every rank")


def quiet_sessions(run: "Run") -> None:
    """Ranks other than 0 write no session store (rank 0's holds the run); ``resume_from`` still restores."""
    from onthefly.sessions.hook import Sessions

    found = [h for h in run.hooks.hooks if isinstance(h, Sessions)]
    for hook in found:
        hook.enabled = False
    if not found:
        run.hooks.add(Sessions(enabled=False))


def refuse_live_restore(ctx: "LoopContext") -> None:
    from onthefly.sessions.hook import NO_LIVE_RESTORE

    ctx.extras[NO_LIVE_RESTORE] = LIVE_RESTORE_REFUSED
