"""EventBus: non-blocking publish from the training thread, bounded history, cursor subscribers.

Publishing appends to a bounded deque (drop-oldest) under a short lock that also assigns the
sequence number, so it costs the training thread well under a microsecond and never blocks on a
subscriber. A pump thread wakes every ``coalesce_seconds``, resolves device values (tensor.item()
and copies happen there, not on the training thread), and moves events into a ring indexed by seq.
Subscribers are just cursors into that ring: a slow one falls behind and is told of the gap when
history has moved past it; it never slows the publisher or other subscribers.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from onthefly.runtime.events import Event

log = logging.getLogger("onthefly")

DEFAULT_QUEUE_EVENTS = 65_536
DEFAULT_HISTORY_EVENTS = 16_384
DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Gap:
    """Events ``first_seq..last_seq`` (inclusive) that a reader will never receive."""

    first_seq: int
    last_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    events: list[Event]
    gap: Gap | None
    next_seq: int  # cursor to pass to the next read
    closed: bool  # no event will ever follow next_seq


class EventBus:
    """Bounded, non-blocking event bus with replayable history. Safe to use from any thread."""

    def __init__(
        self,
        queue_events: int = DEFAULT_QUEUE_EVENTS,
        history_events: int = DEFAULT_HISTORY_EVENTS,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        coalesce_seconds: float = 0.05,
    ) -> None:
        if history_events < 1 or queue_events < 1:
            raise ValueError("queue_events and history_events must be at least 1")
        self._publish_lock = threading.Lock()
        self._queue: collections.deque[Event] = collections.deque(maxlen=queue_events)
        self._next_seq = 1
        self._queue_max = queue_events
        self._history_events = history_events
        self._history_bytes = history_bytes
        self._ring: list[Event | None] = [None] * history_events
        self._ring_bytes = 0
        self._oldest = 1  # oldest seq the ring may still hold
        self._newest = 0  # newest seq moved into the ring
        self._dropped_at_source = 0
        self._dropped_ranges: collections.deque[tuple[int, int]] = collections.deque(maxlen=1024)
        self._cond = threading.Condition()
        self._drain_lock = threading.Lock()
        self._closed = False
        self._subscribers = 0
        self._progress_at = 0.0  # monotonic time a subscriber last called read()
        self._coalesce = coalesce_seconds
        self._observers: list[Callable[[list[Event]], None]] = []
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._pump_loop, name="onthefly-bus", daemon=True)
        self._pump.start()

    # -- publishing (any thread; the training thread's hot path) --------------------------------
    def publish(self, event: Event) -> None:
        """Queue ``event``; never blocks on readers. Drops the oldest queued event when full."""
        with self._publish_lock:
            event.seq = self._next_seq
            self._next_seq += 1
            self._queue.append(event)

    @property
    def last_published_seq(self) -> int:
        return self._next_seq - 1

    @property
    def dropped_at_source(self) -> int:
        return self._dropped_at_source

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return self._subscribers

    def observe(self, callback: Callable[[list[Event]], None]) -> None:
        """Call ``callback(events)`` on the pump thread with each batch of resolved events."""
        self._observers.append(callback)

    # -- pump ------------------------------------------------------------------------------------
    def _pump_loop(self) -> None:
        while not self._stop.wait(self._coalesce):
            self.drain()

    def drain(self) -> None:
        """Move everything queued into history now and wake readers. Besides the pump, close() and any
        thread whose reading must include every event published so far (a checkpoint, a session's
        counts, a health check, a paused run's status) call it; never call it from an observer."""
        with self._drain_lock:
            batch: list[Event] = []
            queue = self._queue
            while True:
                try:
                    batch.append(queue.popleft())
                except IndexError:
                    break
            if not batch:
                return
            batch = [event for event in batch if self._resolved(event)]
            for observe in self._observers:
                try:
                    observe(batch)
                except Exception:  # a failing observer must not stop the stream for everyone else
                    self._warn_once(f"observer {getattr(observe, '__qualname__', observe)!r} failed")
            with self._cond:
                for event in batch:
                    self._store(event)
                self._cond.notify_all()

    def _resolved(self, event: Event) -> bool:
        """Resolve ``event``'s values; an event whose values cannot be read is dropped (its seq is then
        reported as a gap) and logged, instead of ending the pump and with it every stream."""
        try:
            event.resolve()
            return True
        except Exception:
            self._warn_once(f"a {event.kind.name} event could not be read and was dropped")
            return False

    def _warn_once(self, what: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("onthefly: %s (reported once)", what, exc_info=True)

    def _store(self, event: Event) -> None:
        seq = event.seq
        if seq > self._newest + 1:  # the deque dropped these before the pump got to them
            first, last = self._newest + 1, seq - 1
            self._dropped_at_source += last - first + 1
            self._dropped_ranges.append((first, last))
        size = event.nbytes()
        slot = seq % self._history_events
        old = self._ring[slot]
        if old is not None:
            self._ring_bytes -= old.nbytes()
        self._ring[slot] = event
        self._ring_bytes += size
        self._newest = seq
        self._oldest = max(self._oldest, seq - self._history_events + 1)
        while self._ring_bytes > self._history_bytes and self._oldest < seq:
            evict = self._ring[self._oldest % self._history_events]
            if evict is not None and evict.seq == self._oldest:
                self._ring_bytes -= evict.nbytes()
                self._ring[self._oldest % self._history_events] = None
            self._oldest += 1

    # -- reading ---------------------------------------------------------------------------------
    def subscribe(self) -> None:
        with self._cond:
            self._subscribers += 1

    def unsubscribe(self) -> None:
        with self._cond:
            self._subscribers -= 1
            self._cond.notify_all()

    def read(self, next_seq: int, max_events: int = 512, timeout: float = 0.25,
             max_bytes: int = 4 * 1024 * 1024) -> ReadResult:
        """Return events with seq >= ``next_seq``, waiting up to ``timeout`` s for the first one.

        A read returns at most ``max_events`` events and stops after the one that reaches
        ``max_bytes`` (so one huge event still goes through).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._progress_at = time.monotonic()  # a subscriber that reads is one that keeps up
            while self._newest < next_seq and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ReadResult([], None, next_seq, False)
                self._cond.wait(remaining)
            gap = None
            if next_seq < self._oldest:
                gap = Gap(next_seq, self._oldest - 1,
                          f"fell behind the bounded history ({self._history_events} events kept)")
                next_seq = self._oldest
            events: list[Event] = []
            seq = next_seq
            size = 0
            while seq <= self._newest and len(events) < max_events and size < max_bytes:
                event = self._ring[seq % self._history_events]
                if event is None or event.seq != seq:
                    hole_end = seq
                    while hole_end + 1 <= self._newest:
                        nxt = self._ring[(hole_end + 1) % self._history_events]
                        if nxt is not None and nxt.seq == hole_end + 1:
                            break
                        hole_end += 1
                    if events or gap is not None:  # report one gap per read: stop before this one
                        break
                    gap = Gap(seq, hole_end, "dropped at source: the publish queue was full "
                                             "(or a value could not be read: see the run's log)")
                    seq = hole_end + 1
                    continue
                events.append(event)
                size += event.nbytes()
                seq += 1
            closed = self._closed and seq > self._newest
            return ReadResult(events, gap, seq, closed)

    def oldest_seq(self) -> int:
        return self._oldest

    # -- shutdown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush everything published so far and tell readers no more events will come."""
        self._stop.set()
        self._pump.join(timeout=5)
        self.drain()
        with self._cond:
            self._closed = True
            self._progress_at = max(self._progress_at, time.monotonic())  # each subscriber's chance to read on
            self._cond.notify_all()

    def wait_for_subscribers_to_leave(self, timeout: float, stall: float = 2.0) -> bool:
        """After close(): wait until every open subscription has read to the end and left, at most
        ``timeout`` seconds in all, and only while subscribers keep reading: once none has called
        read() for ``stall`` seconds (one that keeps up does so at least every read timeout; a client
        that stopped reading holds its server thread in a blocked send and never does), stop waiting.
        The clock starts at close(). True if all left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._subscribers > 0:
                now = time.monotonic()
                idle = now - self._progress_at
                if now >= deadline or idle >= stall:
                    return False
                self._cond.wait(min(deadline - now, stall - idle))
        return True
