"""Per-sample loss history: every sample's loss at every step it was seen, in the session store.

Rows (split, step, epoch, base index, loss) arrive from the bus's pump thread (``observe``), are buffered
per split, and once a buffer holds ``part_rows`` rows a writer thread sorts it by (index, step) and writes
it as one Parquet part under ``history/<session>/lab-samples/<split>/`` (row groups of ``ROW_GROUP_ROWS``
rows, each covering a narrow range of indices; encodings in ENCODING). The training thread never touches it.

Why this layout: a part sorted by index lets a trajectory query read one row group per part (the
catalog keeps every row group's index range in memory), so one sample's history over 10^8 rows costs
one small read per part; a step's losses sit in the one or two parts written around that step. Memory
is bounded by ``part_rows`` per split plus ``MAX_PENDING_PARTS`` parts waiting for the writer; when the
writer falls behind, the pump waits (the bus's queue, not the training thread, absorbs it).

Queries include rows still in memory, so they see the run as it goes. Parts are files of the session
folder, so a session export carries them and an import adopts them (found on the next query).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import queue
import re
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.runtime.events import Event, EventKind

if TYPE_CHECKING:
    import pyarrow as pa

    from onthefly.sessions.store import SessionFolder

log = logging.getLogger("onthefly")

SPLITS = ("train", "val", "test")
PART_ROWS = 1 << 21  # ~2M rows (~40 MB buffered) per part: 50 parts for 10^8 rows
ROW_GROUP_ROWS = 1 << 14  # one trajectory read decodes one row group per part: keep it small
# Sorted indices and steps delta-pack to a byte or two each, losses byte-split then zstd: measured on 2M rows,
# 5.2 bytes/row and a whole-part read 7x faster than zstd over plain encoding (5.9 bytes/row).
ENCODING = {"index": "DELTA_BINARY_PACKED", "step": "DELTA_BINARY_PACKED", "loss": "BYTE_STREAM_SPLIT"}
COMPRESSION = {"index": "none", "step": "none", "epoch": "none", "loss": "zstd"}
MAX_PENDING_PARTS = 2
# While the disk refuses parts, at most this many parts' worth of rows wait in memory (still readable) for
# the next try; beyond it the oldest are dropped and counted (``dropped_rows``).
MAX_UNWRITTEN_PARTS = 4
COLUMNS = ("index", "step", "epoch", "loss")
_PART_RE = re.compile(r"^history/([^/]+)/lab-samples/(train|val|test)/part-(\d+)\.parquet$")


def schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([("index", pa.int64()), ("step", pa.int64()), ("epoch", pa.int32()), ("loss", pa.float32())])


@dataclass(frozen=True)
class Points:
    """One split's rows for one sample (or one step), sorted by step: parallel numpy arrays."""

    step: np.ndarray
    epoch: np.ndarray
    loss: np.ndarray

    def __len__(self) -> int:
        return len(self.step)


@dataclass(frozen=True)
class Trajectory:
    """Every loss recorded for one base index: per split (train: each step it was trained on; val/test:
    each evaluation), sorted by step."""

    index: int
    splits: dict[str, Points]


@dataclass(frozen=True)
class StepLosses:
    """The losses of one split at one step (train: the samples of that step's batches; val/test: that
    evaluation), by base index."""

    split: str
    step: int
    index: np.ndarray
    loss: np.ndarray


@dataclass
class _Part:
    rel: str
    path: Path
    split: str
    rows: int
    step_min: int
    step_max: int
    group_min: np.ndarray  # per row group: smallest index
    group_max: np.ndarray  # per row group: largest index
    _file: Any = None  # the open ParquetFile (its footer parsed once), with a lock: reads come from any thread
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def _open(self):
        import pyarrow.parquet as pq

        if self._file is None:
            self._file = pq.ParquetFile(self.path, memory_map=True)
        return self._file

    def read_groups(self, groups: list[int]):
        with self._lock:
            return self._open().read_row_groups(groups, columns=list(COLUMNS))

    def read(self, columns: list[str]):
        with self._lock:
            return self._open().read(columns=columns)


class _Buffer:
    """One split's rows not yet handed to the writer."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (step, epoch, index, loss)
        self.rows = 0
        self._joined: tuple[int, dict[str, np.ndarray]] | None = None  # (chunks joined, columns): queries reuse it

    def columns(self) -> dict[str, np.ndarray]:
        """The buffered rows as columns (joined once per change, not once per query)."""
        chunks = self.chunks[:]  # a snapshot: the pump may append meanwhile
        joined = self._joined
        if joined is None or joined[0] != len(chunks):
            if joined is not None and joined[0] < len(chunks):
                more = _columns(chunks[joined[0]:])
                cols = {name: np.concatenate([joined[1][name], more[name]]) for name in COLUMNS}
            else:
                cols = _columns(chunks)
            joined = self._joined = (len(chunks), cols)
        return joined[1]


def _columns(chunks: list[tuple[int, int, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {"index": np.empty(0, np.int64), "step": np.empty(0, np.int64), "epoch": np.empty(0, np.int32),
                "loss": np.empty(0, np.float32)}
    lengths = [len(c[2]) for c in chunks]
    return {
        "index": np.concatenate([c[2] for c in chunks]).astype(np.int64, copy=False),
        "step": np.repeat(np.array([c[0] for c in chunks], dtype=np.int64), lengths),
        "epoch": np.repeat(np.array([c[1] for c in chunks], dtype=np.int32), lengths),
        "loss": np.concatenate([c[3] for c in chunks]).astype(np.float32, copy=False),
    }


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    return split


class SampleHistory:
    """A session's per-sample loss history. ``observe`` runs on the bus's pump thread; every other method
    is safe from any thread. ``folder=None`` keeps nothing and every query raises FailedPrecondition."""

    def __init__(self, folder: "SessionFolder | None", session_id: str = "", *, part_rows: int = PART_ROWS,
                 durable: bool = False) -> None:
        if part_rows < 1:
            raise InvalidArgument(f"part_rows must be at least 1, got {part_rows}")
        self._folder = folder
        self._prefix = f"history/{session_id or (folder.session_id if folder else '')}/lab-samples"
        self._part_rows = part_rows
        self._durable = durable  # parts are re-derivable telemetry: surviving a killed process is enough
        self._lock = threading.RLock()
        self._buffers = {split: _Buffer() for split in SPLITS}
        self._pending: list[tuple[str, _Buffer]] = []  # full buffers queued for the writer, still readable
        self._parts: list[_Part] = []
        self._known: set[str] = set()
        self._next_part = 1
        self._rows = {split: 0 for split in SPLITS}
        self._step_max = -1
        self._epoch_steps: dict[int, int] = {}  # train epoch -> first step recorded in it (this process)
        self._hold = threading.Lock()  # held while a bundle is written: no part file appears meanwhile
        self._queue: queue.Queue = queue.Queue(maxsize=MAX_PENDING_PARTS)
        self._error: str = ""
        self._unwritten: list[tuple[str, _Buffer]] = []  # parts whose write failed: kept, retried first
        self.dropped_rows = 0  # rows given up on while the disk refused parts
        self._writer = None
        self._retired = False  # the writer thread ends once the parts queued before retire() are written
        if folder is not None:
            self._writer = threading.Thread(target=self._write_loop, name="onthefly-lab-history", daemon=True)
            self._writer.start()
            _LIVE.add(self)

    @property
    def enabled(self) -> bool:
        return self._folder is not None

    def rows(self, split: str = "train") -> int:
        """Rows recorded for ``split`` so far (written or still in memory)."""
        with self._lock:
            return self._rows[_check_split(split)]

    # -- pump thread -----------------------------------------------------------------------------
    def observe(self, events: list[Event]) -> None:
        """Bus observer: buffer every SAMPLE_LOSSES event's rows; hand full buffers to the writer."""
        if self._folder is None:
            return
        full = []
        with self._lock:
            for event in events:
                if event.kind is not EventKind.SAMPLE_LOSSES:
                    continue
                p = event.payload
                split = p.split if p.split in SPLITS else "train"
                index, losses = p.indices, p.losses
                known = index >= 0
                if not known.all():  # rows without a base index cannot be keyed: left out
                    index, losses = index[known], losses[known]
                if not len(index):
                    continue
                buffer = self._buffers[split]
                buffer.chunks.append((event.step, event.epoch, index, losses))
                buffer.rows += len(index)
                self._rows[split] += len(index)
                if event.step > self._step_max:
                    self._step_max = event.step
                if split == "train" and event.epoch not in self._epoch_steps:
                    self._epoch_steps[event.epoch] = event.step
                if buffer.rows >= self._part_rows:
                    full.append(self._stage(split))
        for item in full:
            self._queue.put(item)  # waits while MAX_PENDING_PARTS parts are queued: bounded memory

    def _stage(self, split: str) -> tuple[str, "_Buffer"]:
        # The full buffer itself goes to the writer (joined there, not on the pump); a fresh one takes its place.
        item = (split, self._buffers[split])
        self._buffers[split] = _Buffer()
        self._pending.append(item)
        return item

    # -- writer thread ---------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                with self._hold:
                    self._write_kept(None if item is None or item is _RETRY else item)
                if item is None:
                    return
            finally:
                self._queue.task_done()

    def _write_kept(self, item: "tuple[str, _Buffer] | None") -> None:
        """Write the parts an earlier failure kept, then ``item``. A failure (a full disk) must not end the
        pump or lose rows: the parts not written stay in memory, readable, for the next try, up to
        ``MAX_UNWRITTEN_PARTS`` parts' worth of rows (beyond, the oldest are dropped and counted)."""
        with self._lock:
            todo, self._unwritten = self._unwritten + ([item] if item is not None else []), []
        for n, queued in enumerate(todo):
            try:
                self._write(*queued)
            except Exception as exc:  # noqa: BLE001 - kept for the next try; queries say what happened
                if not self._error:
                    log.warning("onthefly: the lab's sample history could not write a part (%s: %s); its rows "
                                "are kept in memory and written when the disk takes them", type(exc).__name__, exc)
                self._error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._unwritten = todo[n:] + self._unwritten
                    self._drop_unwritten_beyond(MAX_UNWRITTEN_PARTS * self._part_rows)
                return
        if todo:
            self._error = ""

    def _drop_unwritten_beyond(self, rows: int) -> None:
        kept = sum(buffer.rows for _, buffer in self._unwritten)
        while self._unwritten and kept > rows:
            split, buffer = self._unwritten.pop(0)
            kept -= buffer.rows
            self.dropped_rows += buffer.rows
            self._rows[split] -= buffer.rows
            self._pending = [p for p in self._pending if p[1] is not buffer]
            log.warning("onthefly: the lab's sample history dropped %d %s rows the disk would not take (%d so far)",
                        buffer.rows, split, self.dropped_rows)

    def _write(self, split: str, buffer: "_Buffer") -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = buffer.columns()
        order = np.lexsort((columns["step"], columns["index"]))
        table = pa.table({name: columns[name][order] for name in COLUMNS}, schema=schema())
        with self._lock:
            number = self._next_part
            self._next_part += 1
        rel = f"{self._prefix}/{split}/part-{number:06d}.parquet"
        with self._folder.writer(rel, self._durable) as f:
            pq.write_table(table, f, row_group_size=ROW_GROUP_ROWS, compression=COMPRESSION,
                           use_dictionary=["epoch"], column_encoding=ENCODING, write_statistics=["index", "step"])
        index = table.column("index").to_numpy()
        starts = np.arange(0, len(index), ROW_GROUP_ROWS)
        ends = np.minimum(starts + ROW_GROUP_ROWS, len(index)) - 1
        step = columns["step"]
        part = _Part(rel, self._folder.file(rel), split, len(index), int(step.min()), int(step.max()),
                     index[starts], index[ends])
        with self._lock:
            self._parts.append(part)
            self._known.add(rel)
            self._pending = [p for p in self._pending if p[1] is not buffer]

    # -- flushing (any thread) -------------------------------------------------------------------
    def flush(self, wait: bool = True) -> None:
        """Hand every buffered row to the writer and (``wait``) wait until all of it is on disk. Without
        waiting, queries still see the rows (pending parts are read from memory), and the process writes them
        before it exits (an atexit handler)."""
        if self._folder is None or self._writer is None:  # nothing kept, or closed
            return
        with self._lock:
            staged = [self._stage(split) for split in SPLITS if self._buffers[split].rows]
            if self._unwritten and not staged:
                staged = [_RETRY]  # parts a failure kept: another try
        for item in staged:
            if self._retired:  # no writer thread any more: write here, as the writer would
                with self._hold:
                    self._write_kept(None if item is _RETRY else item)
            else:
                self._queue.put(item)
        if wait:
            self._queue.join()

    def retire(self) -> None:
        """At the end of a fit: let the writer thread end once what is queued is written, without waiting
        for it (a process that fits many times must not keep a thread per fit). Later flushes (an export
        after the fit) write on the calling thread."""
        if self._writer is None or self._retired:
            return
        self._retired = True
        self._queue.put(None)

    def _finish_writes(self, timeout: float) -> None:
        """At interpreter exit: let the writer finish the parts queued (the writer is a daemon thread)."""
        if self._writer is None:
            return
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                self._queue.all_tasks_done.wait(max(0.0, deadline - time.monotonic()))
        if self.unwritten_rows:
            log.warning("onthefly: the process ends with %d rows of the lab's sample history unwritten (%s)",
                        self.unwritten_rows, self._error)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Everything recorded so far on disk, and no new part file until the block ends (a bundle is
        being written from the folder's file list)."""
        self.flush()
        unwritten = self.unwritten_rows
        if unwritten:  # not refused: an export to another disk is how a person saves the run from a full one
            log.warning("onthefly: %d rows of the lab's sample history are not on disk (%s), so a bundle written "
                        "now lacks them; they stay in memory and are written when the disk takes them",
                        unwritten, self._error)
        with self._hold:
            yield

    def close(self) -> None:
        """Write what is buffered and stop the writer thread."""
        if self._writer is None:
            return
        self.flush()
        if not self._retired:
            self._queue.put(None)
        self._writer.join(30)
        self._writer = None

    # -- queries (any thread) --------------------------------------------------------------------
    def _require(self) -> None:
        if self._folder is None:
            raise FailedPrecondition("this run keeps no per-sample history: it has no session store "
                                     "(Sessions(enabled=False)); enable sessions to record it")

    def _discover(self) -> None:
        """Adopt parts that appeared in the folder without this writer (an imported session's)."""
        own = self._prefix + "/"  # this writer's parts enter the catalog as it writes them
        found = [rel for rel in self._folder.files
                 if rel not in self._known and not rel.startswith(own) and _PART_RE.match(rel)]
        for rel in found:
            path = self._folder.file(rel)
            if not path.exists():  # listed before it is written (an import copying it right now)
                continue
            part = _read_part(path, rel)
            with self._lock:
                if rel not in self._known:
                    self._known.add(rel)
                    if part is not None:
                        self._parts.append(part)

    def _snapshot(self, split: str) -> tuple[list[_Part], list[dict[str, np.ndarray]]]:
        self._require()
        self._discover()
        with self._lock:
            parts = [p for p in self._parts if p.split == split]
            buffers = [buffer for s, buffer in self._pending if s == split] + [self._buffers[split]]
        # Joined outside the lock (the pump appends meanwhile; a buffer is never emptied in place, only replaced).
        return parts, [buffer.columns() for buffer in buffers]

    def trajectory(self, index: int, splits: tuple[str, ...] = SPLITS) -> Trajectory:
        """Every recorded loss of base index ``index``, per split, sorted by step."""
        if not isinstance(index, (int, np.integer)) or index < 0:
            raise InvalidArgument(f"a sample index is a base-dataset index >= 0, got {index!r}")
        index = int(index)
        out = {}
        for split in splits:
            parts, memory = self._snapshot(_check_split(split))
            pieces = []
            for part in parts:
                groups = np.flatnonzero((part.group_min <= index) & (part.group_max >= index))
                if not len(groups):
                    continue
                table = _read_groups(part, groups.tolist())
                if table is None:
                    continue
                cols = {name: table.column(name).to_numpy() for name in COLUMNS}
                lo, hi = np.searchsorted(cols["index"], [index, index + 1])
                pieces.append({name: cols[name][lo:hi] for name in COLUMNS})
            for cols in memory:
                keep = cols["index"] == index
                if keep.any():
                    pieces.append({name: cols[name][keep] for name in COLUMNS})
            out[split] = _points(pieces)
        return Trajectory(index, out)

    def step_losses(self, step: int, split: str = "train") -> StepLosses:
        """The losses recorded at ``step`` for ``split``; empty arrays when none were."""
        parts, memory = self._snapshot(_check_split(split))
        index, loss = [], []
        for part in parts:
            if not part.step_min <= step <= part.step_max:
                continue
            table = _read(part, ["index", "step", "loss"])
            if table is not None:
                keep = table.column("step").to_numpy() == step
                index.append(table.column("index").to_numpy()[keep])
                loss.append(table.column("loss").to_numpy()[keep])
        for cols in memory:
            keep = cols["step"] == step
            index.append(cols["index"][keep])
            loss.append(cols["loss"][keep])
        index_all = np.concatenate(index) if index else np.empty(0, np.int64)
        loss_all = np.concatenate(loss) if loss else np.empty(0, np.float32)
        order = np.argsort(index_all, kind="stable")
        return StepLosses(split, int(step), index_all[order], loss_all[order])

    def table(self, split: str = "train", *, first_step: int | None = None, last_step: int | None = None,
              indices: np.ndarray | None = None) -> "pa.Table":
        """All rows of ``split`` (index, step, epoch, loss), optionally only steps in [first_step, last_step]
        and only the given base indices, sorted by (index, step)."""
        import pyarrow as pa

        parts, memory = self._snapshot(_check_split(split))
        wanted = None if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
        lo = -(1 << 62) if first_step is None else int(first_step)
        hi = (1 << 62) if last_step is None else int(last_step)

        def keep(cols: dict[str, np.ndarray], by_index: bool = False) -> dict[str, np.ndarray]:
            if wanted is not None and by_index:  # sorted by index: gather each wanted index's run of rows
                starts = np.searchsorted(cols["index"], wanted)
                ends = np.searchsorted(cols["index"], wanted, side="right")
                lengths = ends - starts
                rows = np.repeat(ends - np.cumsum(lengths), lengths) + np.arange(int(lengths.sum()))
                cols = {name: cols[name][rows] for name in COLUMNS}
            mask = None
            if first_step is not None or last_step is not None:
                mask = (cols["step"] >= lo) & (cols["step"] <= hi)
            if wanted is not None and not by_index:
                member = np.isin(cols["index"], wanted)
                mask = member if mask is None else mask & member
            return cols if mask is None else {name: cols[name][mask] for name in COLUMNS}

        pieces = []
        for part in parts:
            if part.step_max < lo or part.step_min > hi:
                continue
            if wanted is not None:  # row groups whose index range holds no wanted index are skipped
                first = np.searchsorted(wanted, part.group_min)
                groups = np.flatnonzero(first < np.searchsorted(wanted, part.group_max, side="right"))
                table = _read_groups(part, groups.tolist()) if len(groups) else None
            else:
                table = _read(part, list(COLUMNS))
            if table is not None:
                pieces.append((True, keep({name: table.column(name).to_numpy() for name in COLUMNS}, by_index=True)))
        pieces.extend((False, keep(cols)) for cols in memory)
        pieces = [(from_part, p) for from_part, p in pieces if len(p["index"])]
        if not pieces:
            return schema().empty_table()
        table = pa.table({name: np.concatenate([p[name] for _, p in pieces]) for name in COLUMNS}, schema=schema())
        if len(pieces) == 1 and pieces[0][0]:
            return table  # one part's rows: already sorted by (index, step)
        return table.sort_by([("index", "ascending"), ("step", "ascending")])

    def epoch_losses(self, split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(base indices, epochs, mean loss matrix [index x epoch], NaN where a sample was not seen) - the
        per-epoch view "forgotten samples" and training-trend descriptions read."""
        table = self.table(split)
        index = table.column("index").to_numpy()
        epoch = table.column("epoch").to_numpy()
        loss = table.column("loss").to_numpy().astype(np.float64)
        indices, row = np.unique(index, return_inverse=True)
        epochs, col = np.unique(epoch, return_inverse=True)
        sums = np.zeros((len(indices), len(epochs)))
        counts = np.zeros((len(indices), len(epochs)))
        np.add.at(sums, (row, col), loss)
        np.add.at(counts, (row, col), 1)
        with np.errstate(invalid="ignore"):
            return indices, epochs, sums / counts

    def epoch_first_steps(self) -> dict[int, int]:
        """Train epoch -> the first step this process recorded in it (imported history not included)."""
        with self._lock:
            return dict(self._epoch_steps)

    @property
    def error(self) -> str:
        """Why the last write failed, while parts wait in memory for the disk ("" once everything is written)."""
        return self._error

    @property
    def unwritten_rows(self) -> int:
        """Rows kept in memory (readable) after a failed write, waiting for the next try."""
        with self._lock:
            return sum(buffer.rows for _, buffer in self._unwritten)

    def parts(self) -> list[str]:
        """Session-relative paths of the parts written or adopted so far."""
        self._require()
        self._discover()
        with self._lock:
            return [p.rel for p in self._parts]


_LIVE: "weakref.WeakSet[SampleHistory]" = weakref.WeakSet()
_RETRY = ("", None)  # a writer queue item: only retry the parts a failure kept
EXIT_WRITE_SECONDS = 60.0


@atexit.register
def _finish_all_writes() -> None:
    """Parts handed to a writer without waiting (a run's end) reach the disk before the process exits."""
    for history in list(_LIVE):
        history._finish_writes(EXIT_WRITE_SECONDS)


if hasattr(os, "register_at_fork"):
    # A forked child has none of the writer threads: it must neither wait for them at exit nor write parts.
    os.register_at_fork(after_in_child=_LIVE.clear)


def _points(pieces: list[dict[str, np.ndarray]]) -> Points:
    if not pieces:
        return Points(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.float32))
    step = np.concatenate([p["step"] for p in pieces])
    order = np.argsort(step, kind="stable")
    return Points(step[order], np.concatenate([p["epoch"] for p in pieces])[order],
                  np.concatenate([p["loss"] for p in pieces])[order])


def _read_groups(part: _Part, groups: list[int]):
    try:
        return part.read_groups(groups)
    except (OSError, ValueError) as exc:
        log.warning("onthefly: history part %s is unreadable (%s); left out", part.rel, exc)
        return None


def _read(part: _Part, columns: list[str]):
    try:
        return part.read(columns)
    except (OSError, ValueError) as exc:
        log.warning("onthefly: history part %s is unreadable (%s); left out", part.rel, exc)
        return None


def _read_part(path: Path, rel: str) -> _Part | None:
    """A part's catalog entry from its footer (an imported part); None when it cannot be read."""
    import pyarrow.parquet as pq

    match = _PART_RE.match(rel)
    try:
        meta = pq.ParquetFile(path).metadata
        names = meta.schema.names
        i_index, i_step = names.index("index"), names.index("step")
        lo, hi, smin, smax = [], [], [], []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            si, ss = group.column(i_index).statistics, group.column(i_step).statistics
            lo.append(si.min)
            hi.append(si.max)
            smin.append(ss.min)
            smax.append(ss.max)
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("onthefly: history part %s is unreadable (%s); left out", rel, exc)
        return None
    if not lo:
        return None
    return _Part(rel, path, match.group(2), meta.num_rows, int(min(smin)), int(max(smax)),
                 np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64))
