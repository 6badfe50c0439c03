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
from typing import TYPE_CHECKING, Any

import numpy as np

from onthefly.distributed.rendezvous import declined_key
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.runtime.events import Event, EventKind, LogRecord

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.run import Run

# ctx.extras key of rank 0's Roster (the coordinator servicer finds it there).
ROSTER = "distributed.roster"

# A data-loading straggler: over at least STRAGGLER_STEPS steps, a rank's average wait for its batch
# exceeds both STRAGGLER_FACTOR x the other ranks' median and that median plus STRAGGLER_MARGIN seconds. (Under
# DDP every rank's step takes as long as the slowest one's, so the batch wait is what tells them apart.)
STRAGGLER_STEPS = 20
STRAGGLER_FACTOR = 2.0
STRAGGLER_MARGIN = 0.005


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
        # Data-order parity: each epoch's train indices per rank, checked once every rank is past the epoch.
        self._order: dict[int, dict[int, list[np.ndarray]]] = {}
        self._epoch_of = [0] * world.world_size
        self._sampled: set[int] = set()  # ranks that have reported train samples
        self._checked_below = 0
        self._order_lock = threading.Lock()  # the pump thread adds; the end of the run checks what is left
        self._data_wait = [[0.0, 0] for _ in range(world.world_size)]  # per rank: total batch wait, steps
        self._stragglers: set[int] = set()
        run.bus.observe(self._observe)

    def _observe(self, events: list[Event]) -> None:
        # On rank 0's pump thread, for its own events and the others' republished ones alike.
        for event in events:
            if event.kind is EventKind.STEP_METRICS:
                self._seen(event.rank, event)
            elif event.kind is EventKind.SAMPLE_LOSSES and event.payload.split == "train":
                with self._order_lock:
                    self._order.setdefault(event.epoch, {}).setdefault(event.rank, []).append(event.payload.indices)
                self._epoch_of[event.rank] = max(self._epoch_of[event.rank], event.epoch)
                self._sampled.add(event.rank)
        # An epoch is complete once every rank that reports samples (and is not lost) is past it; ranks
        # that report none never hold it open, so rank 0 keeps at most the epochs still in progress.
        with self._cond:
            active = [r for r in self._sampled if self._entries[r].state is not RankState.LOST]
        done = min((self._epoch_of[r] for r in active), default=0)
        while self._checked_below < done:
            self._check_order(self._checked_below)
            self._checked_below += 1

    def _check_order(self, epoch: int) -> None:
        """Every rank's samples of ``epoch`` must be its own: a DistributedSampler pads with at most
        world_size - 1 repeats, so more shared indices mean ranks train on the same data."""
        with self._order_lock:
            per_rank = self._order.pop(epoch, {})
        if len(per_rank) < 2:
            return
        sets = [np.unique(np.concatenate(batches)) for batches in per_rank.values()]
        sets = [s[s >= 0] for s in sets]
        values, counts = np.unique(np.concatenate(sets), return_counts=True)
        shared = values[counts > 1]
        if len(shared) > self.world_size - 1:
            example = ", ".join(str(int(i)) for i in shared[:5])
            self.run.publish(EventKind.LOG, LogRecord(logging.ERROR, "onthefly.health", (
                f"data order: in epoch {epoch}, {len(shared)} samples were trained on by more than one rank "
                f"(dataset indices {example}, ...); give each rank's DistributedSampler its own rank= "
                f"(and call set_epoch), or the ranks repeat each other's work")))

    def _seen(self, rank: int, event: Event) -> None:
        p = event.payload
        with self._cond:
            entry = self._entries[rank]
            self._entries[rank] = replace(entry, step=event.step, samples_per_second=p.samples_per_second,
                                          data_seconds=p.data_seconds, last_seen=time.time())
            wait = self._data_wait[rank]
            wait[0] += p.data_seconds
            wait[1] += 1
            slow = self._straggler(rank)
        if slow is not None:
            self.note(rank, slow)
            self.run.publish(EventKind.LOG, LogRecord(logging.WARNING, "onthefly.health", slow))

    def _straggler(self, rank: int) -> str | None:
        """A finding when ``rank`` has become a data-loading straggler (once per rank; under _cond)."""
        if rank in self._stragglers or any(n < STRAGGLER_STEPS for _, n in self._data_wait):
            return None
        means = [total / n for total, n in self._data_wait]
        mine = means.pop(rank)
        median = float(np.median(means))  # of the other ranks
        if mine <= max(STRAGGLER_FACTOR * median, median + STRAGGLER_MARGIN):
            return None
        self._stragglers.add(rank)
        return (f"rank {rank} is a data-loading straggler: it waits {mine * 1e3:.1f} ms per step for its batch, "
                f"the other ranks {median * 1e3:.1f} ms (median), and every rank's step waits for it (more DataLoader "
                f"workers on that rank, or a faster source for its shard)")

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
            event.rank = rank  # its figures are taken when it passes rank 0's pump (_observe)
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

    def wait_reports(self, timeout: float, store: Any = None) -> bool:
        """Wait until every other rank has closed or lost its report stream; False on timeout.
        Rank 0 calls it before it ends the run, so the other ranks' last events precede FINISHED. A rank
        that has not joined yet (a short run on a busy machine) is waited for too, unless it declined
        through ``store`` (it runs on another host): its events are queued on its side until it joins."""
        deadline = time.monotonic() + timeout

        def waiting() -> bool:
            for e in self._entries.values():
                if e.rank == 0 or e.state is RankState.LOST:
                    continue
                if e.state is RankState.TRAINING:
                    return True
                if e.state is RankState.PENDING and store is not None and not store.check([declined_key(e.rank)]):
                    return True
            return False

        with self._cond:
            while waiting():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))  # a decline arrives through the store, not a notify
            complete = not waiting()
        self.run.bus.drain()  # every event published so far, through _observe: then the last epochs
        with self._order_lock:
            left = sorted(self._order)
        for epoch in left:
            self._check_order(epoch)
        return complete
