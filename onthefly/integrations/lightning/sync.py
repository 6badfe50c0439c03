"""RankSync: under distributed training, rank 0 decides at every batch boundary and every rank follows.

Only rank 0 hosts the API, so only its Control receives commands. At each boundary rank 0 applies
them (pause, step N, stop, set hyperparameters, health checks, test-now run there alone) and then
broadcasts the decision every rank must share: stop or not, paused or not, and the hyperparameter
values the commands changed. Every rank therefore stops, pauses and changes its learning rate at the
same global step: a pause reaches every rank at once, and while paused rank 0 re-broadcasts "still
paused" (with any hyperparameter change) every ``heartbeat`` seconds, so no collective waits long
enough to hit the process group's timeout, however long a person pauses.

Cost per boundary when nothing changes: one broadcast of three int64 values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from onthefly.runtime import hyperparams
from onthefly.runtime.events import RunState

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext

Changes = list[tuple[int, dict[str, float]]]


def changed_values(before: Changes, after: Changes) -> Changes:
    """Per param group, the numeric keys whose value differs between two ``read_groups`` snapshots."""
    old = dict(before)
    out = []
    for group, values in after:
        diff = {k: v for k, v in values.items() if old.get(group, {}).get(k) != v}
        if diff:
            out.append((group, diff))
    return out


class RankSync:
    """Shares rank 0's boundary decisions with every rank. Call ``boundary`` on every rank at every boundary."""

    def __init__(self, heartbeat: float = 1.0) -> None:
        self.rank = dist.get_rank()
        self.heartbeat = heartbeat
        self._shared_paused = False  # what the last broadcast told the peers
        cuda = dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

    def boundary(self, ctx: "LoopContext") -> bool:
        """Apply (rank 0) or receive (others) this boundary's decisions; True when training must stop."""
        control = ctx.run.control
        wait = 0.0  # the first decision goes out at once, so every rank enters a pause at this very step
        while True:
            changes: Changes = []
            if self.rank == 0:
                before = hyperparams.read_groups(ctx.optimizer) if ctx.optimizer is not None else []
                if control.state is RunState.PAUSED and not self._shared_paused:
                    # Paused since the last boundary (a step budget ran out): tell the peers before
                    # applying anything queued meanwhile, so every rank pauses at this step too.
                    stop = control.stop_requested
                else:
                    stop = control.boundary(ctx, max_wait=wait)
                wait = self.heartbeat
                if ctx.optimizer is not None:
                    changes = changed_values(before, hyperparams.read_groups(ctx.optimizer))
                paused = control.state is RunState.PAUSED and not stop
                header = torch.tensor([int(stop), int(paused), int(bool(changes))], dtype=torch.int64,
                                      device=self.device)
            else:
                header = torch.zeros(3, dtype=torch.int64, device=self.device)
            dist.broadcast(header, src=0)
            stop, paused, changed = (bool(v) for v in header.tolist())
            self._shared_paused = paused
            if changed:
                box: list[Any] = [changes if self.rank == 0 else None]
                dist.broadcast_object_list(box, src=0, device=self.device)
                if self.rank != 0:
                    for group, values in box[0]:
                        hyperparams.apply(ctx.optimizer, values, [group], ctx.scheduler)
            if self.rank != 0:
                self._follow(ctx, stop, paused)
            if not paused:
                return stop

    @staticmethod
    def _follow(ctx: "LoopContext", stop: bool, paused: bool) -> None:
        control = ctx.run.control
        control.stop_requested = control.stop_requested or stop
        if paused:
            control.enter_pause(ctx, "paused by rank 0")
        else:
            control.leave_pause(ctx, "resumed by rank 0")
