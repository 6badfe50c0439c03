"""Roster: rank 0's view of every rank of the job — who joined, what each reported, who was lost.

The other ranks' telemetry reaches rank 0 through the CoordinatorService; the roster republishes each
of their events on rank 0's bus tagged with its rank, so a client keeps one stream for the whole job.
Every method is safe to call from any thread.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.runtime.events import Event, EventKind, LogRecord

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.run import Run

# ctx.extras key of rank 0's Roster (the coordinator servicer finds it there).
ROSTER = "distributed.roster"


class RankState(enum.IntEnum):
    """Same numbering as onthefly.v1.RankState."""

    PENDING = 1
    TRAINING = 2
    FINISHED = 3
    LOST = 4


@dataclass(frozen=True)
class RankEntry:
    rank: int
    state: RankState
    host: str = ""
    device: str = ""
    pid: int = 0
    step: int = 0
    samples_per_second: float = 0.0
    data_seconds: float = 0.0
    last_seen: float = 0.0
    message: str = ""
    dropped_at_source: int = 0


class Roster:
    """Rank 0's record of the job's ranks; the others' events go on ``run``'s bus tagged with their rank."""

    def __init__(self, run: "Run", world: "World", device: str) -> None:
        self.run = run
        self.world_size = world.world_size
        self._cond = threading.Condition()
        self._entries = {r: RankEntry(r, RankState.PENDING) for r in range(world.world_size)}
        self._entries[0] = RankEntry(0, RankState.TRAINING, world.host, device, os.getpid(), last_seen=time.time())
        run.bus.observe(self._own)

    def _own(self, events: list[Event]) -> None:
        # Rank 0's own figures, from its bus's pump thread (rank-tagged events are the others').
        for event in events:
            if event.kind is EventKind.STEP_METRICS and event.rank == 0:
                self._seen(0, event)

    def _seen(self, rank: int, event: Event) -> None:
        with self._cond:
            entry = self._entries[rank]
            p = event.payload
            self._entries[rank] = replace(entry, step=event.step, samples_per_second=p.samples_per_second,
                                          data_seconds=p.data_seconds, last_seen=time.time())

    # -- the coordinator servicer's calls --------------------------------------------------------
    def join(self, rank: int, world_size: int, host: str, device: str, pid: int) -> str:
        """Register ``rank``; returns the run id. Raises InvalidArgument naming what does not match."""
        if world_size != self.world_size:
            raise InvalidArgument(f"rank {rank} says the world has {world_size} ranks; rank 0's has {self.world_size}")
        if not 1 <= rank < self.world_size:
            raise InvalidArgument(f"rank must be 1..{self.world_size - 1} (rank 0 hosts the run), got {rank}")
        with self._cond:
            self._entries[rank] = RankEntry(rank, RankState.TRAINING, host, device, pid, last_seen=time.time())
            self._cond.notify_all()
        return self.run.identity.run_id

    def accept(self, rank: int, events: list[Event], dropped_at_source: int) -> None:
        """A joined rank's events: republished on rank 0's bus (non-blocking), tagged with the rank."""
        with self._cond:
            entry = self._entries.get(rank)
            if entry is None or entry.state is not RankState.TRAINING:
                state = "unknown" if entry is None else entry.state.name.lower()
                raise FailedPrecondition(f"rank {rank} is {state}: call JoinRank before reporting")
            self._entries[rank] = replace(entry, last_seen=time.time(), dropped_at_source=dropped_at_source)
        publish = self.run.bus.publish
        for event in events:
            event.rank = rank
            if event.kind is EventKind.STEP_METRICS:
                self._seen(rank, event)
            publish(event)

    def finished(self, rank: int) -> None:
        with self._cond:
            entry = self._entries[rank]
            if entry.state is RankState.TRAINING:
                self._entries[rank] = replace(entry, state=RankState.FINISHED, last_seen=time.time())
            self._cond.notify_all()

    def lost(self, rank: int, why: str) -> None:
        """The rank's report stream broke before its training ended: recorded, and said on the run's stream."""
        with self._cond:
            entry = self._entries[rank]
            if entry.state is not RankState.TRAINING:
                return
            self._entries[rank] = replace(entry, state=RankState.LOST, message=why)
            self._cond.notify_all()
        message = (f"rank {rank} (pid {entry.pid} on {entry.host or '?'}) was lost after step {entry.step}: {why}")
        self.run.publish(EventKind.LOG, LogRecord(logging.ERROR, "onthefly.distributed", message))

    def note(self, rank: int, message: str) -> None:
        """A finding about the rank (a cross-rank check), shown with it in ``onthefly ranks``."""
        with self._cond:
            self._entries[rank] = replace(self._entries[rank], message=message)

    def ranks(self) -> list[RankEntry]:
        with self._cond:
            return [self._entries[r] for r in sorted(self._entries)]

    def wait_reports(self, timeout: float) -> bool:
        """Wait until every other rank has closed or lost its report stream; False on timeout.
        Rank 0 calls it before it ends the run, so the other ranks' last events precede FINISHED."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(e.state in (RankState.PENDING, RankState.TRAINING) for r, e in self._entries.items() if r):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
