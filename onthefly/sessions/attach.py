"""How Trainer.fit gives every run a session (imported lazily: the store pulls in pyarrow)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.sessions.hook import Sessions


def attach_sessions(ctx: "LoopContext", resume_from: str | os.PathLike | None = None) -> "Sessions":
    """Start the run's Sessions hook (the one passed in ``hooks=``, else a default one) and, with
    ``resume_from``, restore that bundle before the first step."""
    from onthefly.sessions.hook import Sessions

    found = [h for h in ctx.run.hooks.hooks if isinstance(h, Sessions)]
    sessions = found[0] if found else Sessions()
    if not found:
        ctx.run.hooks.add(sessions)
    sessions.attach(ctx, resume_from)
    return sessions
