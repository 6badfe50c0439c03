"""The buffer between the training thread and storage, and the background thread that empties it.

The hot path (``metrics(...).log``, ``tracks(...).append``, ``log``) only appends one item to a bounded
deque and compares its length with a threshold. Everything else (typing values, building Arrow tables,
writing files, talking to a server) happens on the writer thread. An item is a tuple ``(sink, time,
payload)``, or, for a metric row, the row dict itself, its call time added under the metric's row key
(``columns.metric_row_key``, the dict's last key). That dict is the only object a metric call
allocates and the garbage collector does not track it, so a burst of a million pending rows drives no
full collections (a tuple holding a dict stays tracked; collections over such a backlog cost more than
the calls themselves). With the C hot path, a metric's plain numeric rows go into a chunk instead
(``hotpath.Chunk``: raw 8-byte values, no object per row, one item for up to ``batch_size`` rows); the
writer seals the chunks it takes, and encodes runs of them with ``columns.chunks_table``.

Triggers: a write starts when ``batch_size`` rows are pending (size: the hot path checks before it
stores a row, so the threshold it compares with, ``q.tally.kick_at``, is ``batch_size - 1``; a chunk's
rows count one by one in ``q.tally.rows``) or ``flush_interval`` seconds have
passed (time); ``flush()`` forces one and waits for it. A size-triggered write starts no sooner than
``Writer.burst_gap`` (30 ms) after the previous write started, so a burst of calls is written in a few large
batches rather than in many small ones, each with its fixed cost and its round trips of the GIL between
the writer and the training thread; ``flush()``, ``close()``, the time trigger and a call blocked by the
``block`` policy never wait for that gap. Bound: at most ``max_pending`` items wait; when the
writer falls behind that far (rows, as for the trigger) the policy applies, visibly: ``block`` makes the logging call wait until the
writer has taken the backlog (counted in ``stats()["blocked_calls"]`` and ``["blocked_seconds"]``, with a
warning the first time), ``raise`` makes it raise :class:`BufferFull` without buffering the row. Nothing is
ever dropped silently: rows the store refuses (a value of the wrong type) or cannot write are counted,
warned about and recorded in the experiment's metadata at close.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import warnings
from itertools import repeat, starmap
from operator import itemgetter
from typing import Any

import pyarrow as pa

from onthefly.tracking.columns import (
    METRIC_OF_ROW_KEY, ROW_KEY_PREFIX, Encoded, chunks_table, numeric_table, rows_to_table,
)
from onthefly.tracking.hotpath import Chunk, Tally, seal_all
from onthefly.tracking.config import WriterConfig
from onthefly.tracking.errors import BufferFull, NotRunning, StorageFailed
from onthefly.tracking.records import StreamKind

log = logging.getLogger("onthefly.tracking")
_REASONS_KEPT = 20
_RETRIES = (0.05, 0.25, 1.0, 3.0)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _callers_level() -> int:
    """``warnings.warn``'s stacklevel, for the caller of this one's caller, that points at the first frame
    outside this package: the user's logging call, however many SDK frames (none for the C hot path) lie
    between."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


class Sink:
    """Where a group of items goes: one stream, and how its payloads become a table."""

    __slots__ = ()
    kind: StreamKind
    name: str

    def _encode(self, times: list[float], payloads: list[Any], state: "WriterState") -> Encoded:
        raise NotImplementedError


class MetricSink(Sink):
    """The metric a queued row dict names by its row key; its rows are encoded by
    :func:`columns.rows_to_table`."""

    __slots__ = ("name", "row_key")
    kind = StreamKind.METRIC

    def __init__(self, row_key: str) -> None:
        self.name, self.row_key = METRIC_OF_ROW_KEY[row_key], row_key

    def _encode(self, times: list[float], payloads: list[Any], state: "WriterState") -> Encoded:
        return rows_to_table(times, payloads, state, self.row_key)




class WriterState:
    """State the writer carries across batches in call order (track timestamps)."""

    def __init__(self) -> None:
        self.last_ts: float | None = None
        self.last_auto_ts = 0.0


class Pending(collections.deque):
    """The bounded buffer. ``append`` is atomic under the GIL; ``kick`` runs only on a threshold. A chunk
    (hotpath.Chunk: up to ``cap`` rows of one metric) is one item, and each of its rows after the first adds
    one to ``tally.rows`` until the writer takes and seals it: ``size()``, the rows waiting, is what the
    trigger (``tally.kick_at``) and the bound count."""

    __slots__ = ("writer", "tally")

    def kick(self) -> None:
        self.writer._on_threshold()

    def size(self) -> int:
        """Rows waiting."""
        return len(self) + self.tally.rows


class Refusing:
    """Stands in for the buffer while the experiment is not running: any write raises NotRunning."""

    __slots__ = ("message", "tally")

    def __init__(self, message: str) -> None:
        self.message = message
        self.tally = Tally()
        self.tally.kick_at = 1 << 62  # never kicks: append refuses

    def __len__(self) -> int:
        return 0

    def append(self, item) -> None:
        raise NotRunning(self.message)

    def kick(self) -> None:  # pragma: no cover - unreachable (len is 0)
        raise NotRunning(self.message)


class Writer:
    """Owns the buffer and the writer thread of one running experiment. ``flush`` and ``close`` are safe
    to call from any thread except the writer thread itself."""

    burst_gap = 0.03  # seconds from one size-triggered write to the next (see the module docstring)

    def __init__(self, backend, prefix: str, config: WriterConfig) -> None:
        self.backend, self.prefix, self.config = backend, prefix, config
        self.q = Pending()
        self.q.writer = self
        self.q.tally = Tally()
        self.q.tally.kick_at = self._size_trigger = max(0, config.batch_size - 1) if config.buffered else 1
        self.state = WriterState()
        self._wake = threading.Event()  # a write is due
        self._urgent = threading.Event()  # ... and must not wait for the burst gap (flush, close, block)
        self._cond = threading.Condition()
        self._tickets: list[threading.Event] = []
        self._stopping = False
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written_rows = 0
        self.refused_rows = 0
        self.failed_rows = 0
        self.blocked_calls = 0
        self.blocked_seconds = 0.0
        self.writes = 0
        self.reasons: list[str] = []
        self.last_error = ""
        # Tables the store could not take for lack of room (or another I/O error): retried before newer
        # rows at every write, at most max_pending rows of them; older ones are dropped and counted.
        self._held: collections.deque[tuple[Sink, Encoded]] = collections.deque()
        self.held_rows = 0
        self.dropped_rows = 0
        self.storage_error = ""  # why rows are held ("" once the store takes them again)
        # Rows written but not made durable because an fsync failed (durable=True): after a failed fsync the
        # kernel may already have dropped those pages, so a later successful fsync proves nothing about them.
        self.unsynced_rows = 0
        self.sync_error = ""
        self._synced_rows = 0  # written_rows at the last fsync attempt
        self._reported = (0, 0, 0)  # (failed_rows, dropped_rows, unsynced_rows) already raised by flush()
        self._warned: set[str] = set()
        self._metric_sinks: dict[str, MetricSink] = {}
        self._unsynced = False
        self._streams: dict[Sink, Any] = {}

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        _warm_up()
        self._thread = threading.Thread(target=self._run, name=f"onthefly-tracking-writer[{self.prefix}]",
                                        daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything appended before this call; with ``durable`` also fsync. True when done.
        Raises StorageFailed if rows could not be stored (they are held and retried, or were dropped)."""
        done = self._flush(timeout)
        self.raise_if_not_stored()
        return done

    def raise_if_not_stored(self) -> None:
        """StorageFailed if rows are held for a retry, or were lost since the last call that raised."""
        lost = (self.failed_rows, self.dropped_rows, self.unsynced_rows)
        if not self.held_rows and lost == self._reported:
            return
        self._reported = lost
        raise StorageFailed(self.loss_report())

    def loss_report(self) -> str:
        """Every row of this run not stored (held, dropped, failed, not made durable), in one line; ""
        when none."""
        parts = []
        if self.held_rows:
            parts.append(f"{self.held_rows} rows are not stored yet ({self.storage_error}); they are kept in "
                         "memory and written at the next flush once the store takes them (free some space)")
        if self.dropped_rows:
            parts.append(f"{self.dropped_rows} rows were dropped because more than max_pending="
                         f"{self.config.max_pending} waited for the store")
        if self.failed_rows:
            parts.append(f"{self.failed_rows} rows could not be written ({self.last_error})")
        if self.unsynced_rows:
            parts.append(f"{self.unsynced_rows} rows were written but may not survive a crash or power loss: "
                         f"fsync failed ({self.sync_error}); check the disk")
        return "onthefly.tracking: " + "; ".join(parts) if parts else ""

    def _flush(self, timeout: float | None = None) -> bool:
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() called from the writer thread")
        if not self.alive:
            self._write_pending()
            self._sync()
            return True
        ticket = threading.Event()
        with self._cond:
            self._tickets.append(ticket)
        self._urgent.set()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ticket.wait(0.25):
            if not self.alive:  # the thread died: write on this thread instead
                self._write_pending()
                self._sync()
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Write everything pending, fsync (if durable) and stop the thread."""
        with self._cond:
            self._stopping = True
        self._flush(timeout)
        self._urgent.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._held:  # the last chance: what the store still refuses is lost now, and counted
            self._retry_held()
            self._drop_held(0)
        self.raise_if_not_stored()

    # hot-path slow branch --------------------------------------------------------------------------------
    def _on_threshold(self) -> None:
        q = self.q
        if not self.config.buffered:
            self.flush()
            return
        if q.size() < self.config.max_pending:
            q.tally.kick_at = self.config.max_pending  # no more kicks until the writer has drained
            self._wake.set()
            return
        if self.config.on_full == "raise":
            raise BufferFull(f"{q.size()} items are waiting to be written (max_pending={self.config.max_pending}) and "
                             f"on_full='raise': this row was not buffered. Log less often, raise max_pending, "
                             f"or use on_full='block'")
        self._block()

    def _block(self) -> None:
        start = time.perf_counter()
        self.blocked_calls += 1
        if "blocked" not in self._warned:
            self._warned.add("blocked")
            warnings.warn(f"onthefly.tracking: the writer fell {self.q.size()} items behind (max_pending="
                          f"{self.config.max_pending}); logging calls now wait for it (on_full='block'). "
                          f"Counted in writer_stats()['blocked_calls'].", RuntimeWarning,
                          stacklevel=_callers_level())
        self._urgent.set()
        self._wake.set()
        with self._cond:
            while self.q.size() >= self.config.max_pending:
                if not self.alive:
                    raise RuntimeError(f"the tracking writer thread is not running ({self.last_error or 'stopped'}); "
                                       f"{self.q.size()} items are pending")
                self._urgent.set()
                self._wake.set()
                self._cond.wait(0.25)
        self.blocked_seconds += time.perf_counter() - start

    # writer thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.flush_interval
        gap = min(self.burst_gap, interval)  # the time trigger does not wait for the gap either
        last = -gap  # when the last write started (monotonic)
        while True:
            if self._wake.wait(interval) and not self._urgent.is_set() and not self._stopping:
                self._urgent.wait(last + gap - time.monotonic())  # size trigger: not before the gap is over
            self._wake.clear()
            self._urgent.clear()  # before taking the tickets: a flush after this point sets it again
            last = time.monotonic()
            with self._cond:
                tickets, self._tickets = self._tickets, []
                stopping = self._stopping
            try:
                self._write_pending()
                if tickets:
                    self._sync()
            except BaseException as exc:  # noqa: BLE001 - the thread must survive and report
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("onthefly.tracking: writer error")
            for ticket in tickets:
                ticket.set()
            if self.q.size() >= self.config.batch_size:
                self._wake.set()
            if stopping and not self.q:
                with self._cond:
                    if not self._tickets:
                        return

    def _sync(self) -> None:
        """fsync what was written since the last sync (nothing to do when nothing was: close flushes twice).
        A failed fsync counts the rows it covered in ``unsynced_rows``: flush() and close() raise
        StorageFailed for them (the experiment is recorded FAILED), as for rows that were not written."""
        if self.config.durable and self._unsynced:
            self._unsynced = False  # before syncing: a write racing with this sync marks it again
            covered, self._synced_rows = self.written_rows - self._synced_rows, self.written_rows
            try:
                self.backend.flush(self.prefix, durable=True)
            except Exception as exc:  # noqa: BLE001 - reported through raise_if_not_stored, never only logged
                self.unsynced_rows += covered
                self.sync_error = self.last_error = f"{type(exc).__name__}: {exc}"
                self._remember(f"{covered} rows not made durable: fsync failed ({self.sync_error})")
                log.error("onthefly.tracking: fsync failed (%s); %d rows may not survive a crash",
                          self.sync_error, covered)

    def _write_pending(self) -> None:
        with self._busy:
            if self._held:
                self._retry_held()
            q = self.q
            n = len(q)
            if n == 0:
                q.tally.kick_at = self._size_trigger
                return
            batch = list(starmap(q.popleft, repeat((), n)))  # C loop: atomic w.r.t. appending threads
            if seal_all is not None:
                seal_all(batch, q.tally)  # their rows are all in now; the loggers start new chunks
            q.tally.kick_at = self._size_trigger
            with self._cond:
                self._cond.notify_all()
            self._write_batch(batch)
            self.writes += 1

    def _write_batch(self, batch: list) -> None:
        """Group items by stream, keeping call order within each, and write each group."""
        groups: dict[Any, tuple[list, list]] | None = None
        first = next(reversed(batch[0])) if type(batch[0]) is dict else None
        if type(batch[0]) is Chunk:  # a burst of plain numeric rows; usually one metric's chunks only
            key = batch[0].row_key
            if all(type(item) is Chunk and item.row_key == key for item in batch):
                groups = {key: ([None] * len(batch), batch)}
        if first in METRIC_OF_ROW_KEY:  # a metric row first: usually a burst of one metric's rows
            try:
                encoded = numeric_table(batch, self.state, first)  # None unless all are its plain numeric rows
            except Exception:  # noqa: BLE001 - the general path below encodes them, or reports why it cannot
                encoded = None
            if encoded is not None:
                self._store(self._metric_sink(first), encoded)
                return
            # one C pass: a row of another metric lacks this key (KeyError; or it has the key as a field,
            # and rows_to_table refuses it), a tuple item has no keys (TypeError)
            try:
                groups = {first: (list(map(itemgetter(first), batch)), batch)}
            except (KeyError, TypeError):
                pass
        elif groups is None and not {dict, Chunk} & set(map(type, batch)):  # (sink, time, payload) tuples only
            sinks, times, payloads = zip(*batch)
            if sinks.count(sinks[0]) == len(sinks):
                groups = {sinks[0]: (list(times), list(payloads))}
        if groups is None:
            groups = {}
            for item in batch:
                if type(item) is dict:
                    key = next(reversed(item))
                    if key not in METRIC_OF_ROW_KEY:  # the row key was a field name too (see columns)
                        key = next(k for k in item if k in METRIC_OF_ROW_KEY)
                    t, payload = item[key], item
                elif type(item) is Chunk:
                    key, t, payload = item.row_key, None, item
                else:
                    key, t, payload = item
                group = groups.get(key)
                if group is None:
                    groups[key] = group = ([], [])
                group[0].append(t)
                group[1].append(payload)
        for key, (group_times, group_payloads) in groups.items():
            self._write_group(key if isinstance(key, Sink) else self._metric_sink(key), group_times, group_payloads)

    def _metric_sink(self, row_key: str) -> MetricSink:
        sink = self._metric_sinks.get(row_key)
        if sink is None:
            sink = self._metric_sinks[row_key] = MetricSink(row_key)
        return sink

    def _write_group(self, sink: Sink, times: list, payloads: list) -> None:
        """Encode and store one stream's items, in call order: runs of chunks with the same fields and types
        as one table each, runs of other rows through the sink's encoding."""
        if Chunk is None or Chunk not in set(map(type, payloads)):
            runs = [(times, payloads)]
        else:
            runs = []
            for t, payload in zip(times, payloads):
                shape = (payload.names, payload.types) if type(payload) is Chunk else None
                if not runs or runs[-1][2] != shape:
                    runs.append(([], [], shape))
                runs[-1][0].append(t)
                runs[-1][1].append(payload)
        for run in runs:
            run_payloads = run[1]
            try:
                if type(run_payloads[0]) is Chunk:
                    encoded = chunks_table(run_payloads, self.state)
                else:
                    encoded = sink._encode(run[0], run_payloads, self.state)
            except Exception as exc:  # noqa: BLE001 - a bug in encoding must not lose the thread
                rows = sum(map(len, run_payloads)) if type(run_payloads[0]) is Chunk else len(run_payloads)
                self._count_failure(rows, f"{sink.kind.value} {sink.name!r}: could not encode rows: {exc}")
                continue
            self._store(sink, encoded)

    def _retry_held(self) -> None:
        """Store held tables, oldest first, until the store refuses one again."""
        while self._held:
            sink, encoded = self._held[0]
            if not self._put(sink, encoded):
                return
            self._held.popleft()
            self.held_rows -= encoded.table.num_rows
        if not self._held:
            self.storage_error = ""

    def _drop_held(self, keep_rows: int) -> None:
        while self._held and self.held_rows > keep_rows:
            _, encoded = self._held.popleft()
            rows = encoded.table.num_rows
            self.held_rows -= rows
            self.dropped_rows += rows
            self._remember(f"{rows} rows dropped: {self.storage_error}")
            log.error("onthefly.tracking: %d rows dropped (the store refused them: %s)", rows, self.storage_error)

    def _store(self, sink: Sink, encoded: Encoded) -> None:
        if encoded.refused or encoded.reasons:
            self._count_refused(sink, encoded.refused, encoded.reasons)
        if encoded.table.num_rows == 0:
            return
        if self._held:  # keep call order: nothing newer is stored before what waits
            self._hold(sink, encoded)
            return
        if not self._put(sink, encoded):
            self._hold(sink, encoded)

    def _hold(self, sink: Sink, encoded: Encoded) -> None:
        self._held.append((sink, encoded))
        self.held_rows += encoded.table.num_rows
        self._drop_held(self.config.max_pending)

    def _put(self, sink: Sink, encoded: Encoded) -> bool:
        """Store one table; False if the store could not take it for an I/O reason (held for a retry)."""
        error = None
        for delay in (*_RETRIES, None):
            try:
                stream = self._streams.get(sink)
                if stream is not None:
                    result = stream.append(encoded.table)
                else:
                    result = self.backend.append(self.prefix, sink.kind, sink.name, encoded.table)
                    self._remember_stream(sink)
                break
            except OSError as exc:  # a full disk, a quota, an I/O error: keep the rows, try again later
                self._streams.pop(sink, None)
                text = f"{sink.kind.value} {sink.name!r}: {exc.strerror or exc}"
                if not self.storage_error:
                    log.error("onthefly.tracking: the store refused rows (%s); they are kept and retried", text)
                self.storage_error = self.last_error = text
                return False
            except Exception as exc:  # noqa: BLE001
                error = exc
                if delay is None or not _retryable(exc):
                    self._count_failure(encoded.table.num_rows,
                                        f"{sink.kind.value} {sink.name!r}: {type(exc).__name__}: {exc}")
                    return True
                time.sleep(delay)
        else:  # pragma: no cover
            raise AssertionError(error)
        self.written_rows += result.rows
        self._unsynced = True
        if result.refused or result.reasons:
            self._count_refused(sink, result.refused, result.reasons)
        return True

    def _remember_stream(self, sink: Sink) -> None:
        """After a first append through the backend (which checks that the experiment exists and the table's
        shape), a local store's later appends go straight to its stream object: the store's per-append
        checks re-read experiment.json, which cost more than encoding and writing 100 rows."""
        stream_of = getattr(self.backend, "stream", None)
        if stream_of is not None:
            self._streams[sink] = stream_of(self.prefix, sink.kind, sink.name)

    def _count_refused(self, sink: Sink, count: int, reasons: list[str]) -> None:
        self.refused_rows += count
        for reason in reasons:
            text = f"{sink.kind.value} {sink.name!r}: {reason}"
            self._remember(text)
            if text not in self._warned:
                self._warned.add(text)
                warnings.warn(f"onthefly.tracking: {text}", RuntimeWarning, stacklevel=2)

    def _count_failure(self, count: int, text: str) -> None:
        self.failed_rows += count
        self.last_error = text
        self._remember(f"{count} rows not written: {text}")
        log.error("onthefly.tracking: %d rows could not be written: %s", count, text)
        warnings.warn(f"onthefly.tracking: {count} rows could not be written: {text}", RuntimeWarning, stacklevel=2)

    def _remember(self, text: str) -> None:
        if text not in self.reasons:
            self.reasons.append(text)
            del self.reasons[:-_REASONS_KEPT]

    def stats(self) -> dict[str, Any]:
        """What the writer did so far, including everything it could not store and why."""
        return {
            "pending": self.q.size(), "max_pending": self.config.max_pending, "on_full": self.config.on_full,
            "batch_size": self.config.batch_size, "flush_interval": self.config.flush_interval,
            "metric_batch_size": self.config.metric_batch_size,
            "track_batch_size": self.config.track_batch_size,
            "written_rows": self.written_rows, "refused_rows": self.refused_rows, "failed_rows": self.failed_rows,
            "blocked_calls": self.blocked_calls, "blocked_seconds": round(self.blocked_seconds, 6),
            "writes": self.writes, "reasons": list(self.reasons), "last_error": self.last_error,
            "held_rows": self.held_rows, "dropped_rows": self.dropped_rows, "unsynced_rows": self.unsynced_rows,
        }


def _warm_up() -> None:
    """Run the encoding and Arrow IPC code once on a tiny table, so that their one-time initialisation
    (a few ms of CPU) happens when the experiment starts rather than during the first write, in the middle
    of the user's loop. Only caches are touched; nothing is written."""
    try:
        table = rows_to_table([0.0], [{"f": 0.0, "i": 0, "s": ""}]).table
        key = ROW_KEY_PREFIX + "warm-up"  # the numeric fast path too (not a registered metric)
        rows_to_table([0.0], [{"f": 0.0, "i": 0, key: 0.0}], None, key)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as ipc:
            ipc.write_table(table)
    except Exception:  # noqa: BLE001 - warming up is only an optimisation
        pass


def _retryable(exc: Exception) -> bool:
    """Transient failures (a server briefly unreachable) are retried; data errors are not."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            name = code().name
        except Exception:  # noqa: BLE001
            return False
        return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")
    return False
