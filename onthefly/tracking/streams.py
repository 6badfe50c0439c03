"""One stream's rows on disk: append-only Arrow IPC journals while a process writes, Parquet parts after.

A stream folder holds ``part-<id>.parquet`` (immutable, readable by pandas, polars and DuckDB) and, while
a process writes, ``_journal-<id>.arrows`` (an Arrow IPC stream; the leading underscore keeps dataset
readers from picking it up). Each append writes one record batch straight to the journal file, so after a
``kill -9`` every append that returned is on disk; a torn last batch is ignored when reading. Closing the
stream turns each journal into the part with the same id (written to a temporary file and renamed), then
removes the journal. A journal whose writer died is turned into a part by the next writer to open the
experiment. Ids sort by creation time, so reading parts and journals in id order gives storage order.
"""

from __future__ import annotations

import contextlib

import os
import re
import secrets
import threading
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from onthefly.tracking import atomic, columns, jsonsafe
from onthefly.tracking.records import AppendResult, StreamKind, pid_alive, this_host

STREAM_META = "_stream.json"
SHARED_KEY = "shared_writers"  # in STREAM_META: pieces hold rows of several writers (server-written)
PART_RE = re.compile(r"^part-([0-9a-f]{14}-[0-9a-f]{6}-\d+-[0-9a-f]{4})\.parquet$")
JOURNAL_RE = re.compile(r"^_journal-(([0-9a-f]{14})-([0-9a-f]{6})-(\d+)-[0-9a-f]{4})\.arrows$")
HOST_TAG = f"{zlib.crc32(this_host().encode()) & 0xFFFFFF:06x}"

# Journals that some stream in this process has open; recovery leaves them alone.
_OPEN_JOURNALS: set[str] = set()
_OPEN_LOCK = threading.Lock()


_last_micros = 0  # the time part of the last id this process made (ids are unique: see new_id)
_writer_tags: dict[str, set[str]] = {}  # folder -> tags of this process's Stream objects on it


def new_id(writer_tag: str | None = None) -> str:
    """A piece id: creation time in microseconds (strictly increasing in this process, so two pieces of one
    writer never share an id), host tag, pid and the writer's tag (4 hex digits; random when None). A
    piece's writer is its host, pid and tag (see _writer_of)."""
    global _last_micros
    with _OPEN_LOCK:
        _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
        micros = _last_micros
    return f"{micros:014x}-{HOST_TAG}-{os.getpid()}-{writer_tag or secrets.token_hex(2)}"


def _claim_writer_tag(folder: Path) -> str:
    """A tag no other Stream object of this process holds on ``folder``: two Experiments in one process
    on one experiment are two writers, whose entries at one timestamp never replace each other."""
    with _OPEN_LOCK:
        taken = _writer_tags.setdefault(str(folder), set())
        for _ in range(1000):  # (all 65,536 taken only after as many Stream objects on one folder)
            tag = secrets.token_hex(2)
            if tag not in taken:
                break
        taken.add(tag)
        return tag


def _read_journal(path: Path) -> pa.Table | None:
    """Every complete record batch of a journal (a torn tail after a crash is ignored)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
    except (pa.ArrowInvalid, OSError):
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            break  # torn tail: the process died while writing this batch
    return pa.Table.from_batches(batches, schema=reader.schema)


class _Journal:
    """An open journal file and its IPC writer."""

    def __init__(self, folder: Path, schema: pa.Schema, writer_tag: str) -> None:
        self.id = new_id(writer_tag)
        self.path = folder / f"_journal-{self.id}.arrows"
        self.schema = schema
        with _OPEN_LOCK:
            _OPEN_JOURNALS.add(str(self.path))
        self.sink = pa.OSFile(str(self.path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def sync(self) -> None:
        os.fsync(self.sink.fileno())

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.sink.close()


class Stream:
    """The folder of one stream and, while this process appends, its open journal. Thread-safe."""

    def __init__(self, folder: Path, kind: StreamKind, name: str, durable: bool = True, shared: bool = False) -> None:
        self.folder, self.kind, self.name, self.durable = folder, kind, name, durable
        # shared: this process writes rows of several writers (the tracking server for its clients), so a
        # piece's process does not name the writer of its rows (see table()).
        self.shared = shared
        # This object is one writer: every piece it writes carries its tag (see _writer_of).
        self.writer_tag = _claim_writer_tag(folder)
        self.lock = threading.RLock()
        self._journal: _Journal | None = None
        self._closed_journals: list[_Journal] = []
        self._schema: pa.Schema | None = None
        self._new_folder = False  # created by this object, not yet fsynced (see _ensure_folder)

    # writing -------------------------------------------------------------------------------------------
    def _ensure_folder(self) -> None:
        """Create the folder and its metadata on the first append. Written atomically but not fsynced here:
        the rows appended next are not fsynced before ``sync()`` either, which makes the folder, its
        metadata and its entry in the parent folder durable with them (measured: the two fsyncs were about
        half of a new stream's first write, ~1 ms of the writer thread in the middle of a training loop)."""
        if not (self.folder / STREAM_META).exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = {"name": self.name, "kind": self.kind.value}
            if self.shared:
                meta[SHARED_KEY] = True
            atomic.write_text(self.folder / STREAM_META, jsonsafe.dumps(meta), durable=False)
            self._new_folder = self.durable

    def append(self, table: pa.Table, replace: bool = False) -> AppendResult:
        """Append rows (already encoded); rows whose values clash with stored types are refused."""
        with self.lock:
            if self._journal is None or replace:  # else the folder exists: this stream's journal is open in it
                self._ensure_folder()
            if replace:
                self._remove_all_pieces()
            if self._schema is None:
                self._schema = self._stored_schema()
            schema, table, refused, reasons = columns.unify(self._schema, table)
            if table.num_rows:
                if self._journal is None or self._journal.schema != schema:
                    self._rotate(schema)
                journal = self._journal
                start = journal.sink.tell()
                try:
                    journal.write(table)
                except OSError:
                    self._abandon(journal, start)
                    raise
            self._schema = schema
            return AppendResult(table.num_rows, refused, reasons)

    def _stored_schema(self) -> pa.Schema | None:
        schemas = []
        for _, path, is_part in self._pieces():
            try:
                schemas.append(pq.read_schema(path) if is_part else _read_journal(path).schema)
            except (OSError, AttributeError, pa.ArrowInvalid):
                continue
        if not schemas:
            return None
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return schemas[-1]

    def _abandon(self, journal: "_Journal", good_bytes: int) -> None:
        """A write failed half-way (a full disk): cut the journal back to its last whole batch and start a
        new one at the next append, so rows written after the failure are not hidden behind a torn batch."""
        with contextlib.suppress(Exception):
            journal.close()
        with contextlib.suppress(OSError):
            os.truncate(journal.path, good_bytes)
        self._closed_journals.append(journal)
        self._journal = None

    def _rotate(self, schema: pa.Schema) -> None:
        if self._journal is not None:
            self._journal.close()
            self._closed_journals.append(self._journal)
            self._ensure_folder()
        self._journal = _Journal(self.folder, schema, self.writer_tag)

    def sync(self) -> None:
        """Make every append so far survive a power loss too (fsync)."""
        with self.lock:
            if self._new_folder:
                fd = os.open(self.folder / STREAM_META, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                atomic.fsync_dir(self.folder.parent)  # the new folder's entry, and its parent's (new with it)
                atomic.fsync_dir(self.folder.parent.parent)
                self._new_folder = False
                if self._journal is None:
                    atomic.fsync_dir(self.folder)
            if self._journal is not None:
                self._journal.sync()
                atomic.fsync_dir(self.folder)

    def close(self) -> None:
        """Close the journal and turn this process's journals into Parquet parts."""
        with self.lock:
            if self._journal is not None:
                self._journal.close()
                self._closed_journals.append(self._journal)
                self._journal = None
            compacted = bool(self._closed_journals)
            for journal in self._closed_journals:
                compact_journal(journal.path, self.kind, self.durable)
            self._closed_journals.clear()
            if compacted:
                unify_parts(self.folder, self.durable, self._schema)

    def _remove_all_pieces(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._closed_journals.append(self._journal)
            self._journal = None
        for journal in self._closed_journals:
            _forget(journal.path)
        self._closed_journals.clear()
        for _, path, _ in self._pieces():
            _remove_owned(path)
        self._schema = None

    # reading -------------------------------------------------------------------------------------------
    def _pieces(self) -> list[tuple[str, Path, bool]]:
        """(id, path, is_part) of every readable piece in storage order; a journal whose part exists is
        skipped (a crash between writing the part and removing the journal)."""
        parts, journals = {}, {}
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        for name in names:
            m = PART_RE.match(name)
            if m:
                parts[m.group(1)] = self.folder / name
                continue
            m = JOURNAL_RE.match(name)
            if m:
                journals[m.group(1)] = self.folder / name
        pieces = [(i, p, True) for i, p in parts.items()]
        pieces += [(i, p, False) for i, p in journals.items() if i not in parts]
        pieces.sort(key=lambda x: x[0])
        return pieces

    def table(self) -> pa.Table:
        """Every stored row (tracks merged by timestamp and sorted by time)."""
        for _attempt in range(3):
            tables, writers = [], []
            try:
                with self.lock:
                    for piece, path, is_part in self._pieces():
                        table = pq.read_table(path) if is_part else _read_journal(path)
                        if table is not None:
                            tables.append(table)
                            writers.append(_writer_of(piece))
            except FileNotFoundError:
                continue  # another process compacted a journal while we listed: list again
            table = columns.concat(tables)
            if self.kind is StreamKind.TRACK:
                # A track entry's writer is the Stream object that wrote its piece (its id names host, pid
                # and the object's tag): its later value at a timestamp corrects its own; no other writer's.
                rows = None if self._shared() else [w for t, w in zip(tables, writers) for _ in range(t.num_rows)]
                table = columns.merge_same_timestamps(table, rows)
            return table
        raise RuntimeError(f"stream {self.name!r} keeps changing while being read; try again")

    def _shared(self) -> bool:
        if self.shared:
            return True
        try:
            return bool(jsonsafe.loads((self.folder / STREAM_META).read_text("utf-8")).get(SHARED_KEY))
        except (OSError, ValueError, AttributeError):
            return True  # unknown: keep conflicting entries apart rather than risk an overwrite

    def info(self) -> tuple[int, list[str]]:
        """(rows, field names) without merging."""
        rows, fields = 0, {}
        with self.lock:
            for _, path, is_part in self._pieces():
                try:
                    if is_part:
                        meta = pq.read_metadata(path)
                        rows += meta.num_rows
                        names = meta.schema.to_arrow_schema().names
                    else:
                        t = _read_journal(path)
                        if t is None:
                            continue
                        rows += t.num_rows
                        names = t.column_names
                except FileNotFoundError:
                    continue
                fields.update(dict.fromkeys(names))
        if self.kind is StreamKind.TRACK and rows:
            rows = self.table().num_rows
        return rows, list(fields)


def _writer_of(piece_id: str) -> str:
    """The writer of a piece: its id's host tag, pid and writer tag (one Stream object of that process;
    pieces written before tags existed have a random one, so each is its own writer)."""
    _time, host, pid, tag = piece_id.split("-")
    return f"{host}-{pid}-{tag}"


def _forget(path: Path) -> None:
    with _OPEN_LOCK:
        _OPEN_JOURNALS.discard(str(path))


def _remove_owned(path: Path) -> None:
    """Remove a piece this store wrote; refuses anything that is not a part or journal by name."""
    if not (PART_RE.match(path.name) or JOURNAL_RE.match(path.name)):
        raise RuntimeError(f"refusing to remove {path}: not a file the tracking store wrote")
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def compact_journal(path: Path, kind: StreamKind, durable: bool = True) -> None:
    """Turn one closed journal into the Parquet part with the same id, then remove the journal."""
    m = JOURNAL_RE.match(path.name)
    if m is None:
        return
    part = path.with_name(f"part-{m.group(1)}.parquet")
    if not part.exists():
        table = _read_journal(path)
        if table is not None and table.num_rows:
            if kind is StreamKind.TRACK:
                table = columns.merge_same_timestamps(table)
            with atomic.atomic_writer(part, durable=durable) as f:
                pq.write_table(table, f)
    _remove_owned(path)
    _forget(path)


def recover_folder(folder: Path, kind: StreamKind, durable: bool = True) -> int:
    """Compact journals left behind by processes on this host that are gone; returns how many."""
    count = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        m = JOURNAL_RE.match(name)
        if m is None or m.group(3) != HOST_TAG:
            continue
        path = folder / name
        with _OPEN_LOCK:
            if str(path) in _OPEN_JOURNALS:
                continue
        pid = int(m.group(4))
        if pid != os.getpid() and pid_alive(pid):
            continue
        compact_journal(path, kind, durable)
        count += 1
    if count:
        unify_parts(folder, durable)
    return count


def unify_parts(folder: Path, durable: bool = True, schema: pa.Schema | None = None) -> int:
    """Rewrite the parts whose schema differs from the stream's unified one (ints promoted to floats, fields
    added later), so that the folder reads as one dataset in pyarrow, pandas, polars or DuckDB without any
    option: a dataset reader takes the first part's schema and fails on, or drops, what differs. Each
    rewrite is atomic and keeps the part's id and rows. Returns how many parts were rewritten."""
    try:
        parts = sorted(folder / name for name in os.listdir(folder) if PART_RE.match(name))
    except FileNotFoundError:
        return 0
    schemas = {}
    for part in parts:
        try:
            schemas[part] = pq.read_schema(part)
        except (FileNotFoundError, pa.ArrowInvalid):
            continue
    try:
        unified = pa.unify_schemas([s for s in (schema, *schemas.values()) if s is not None],
                                   promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return 0  # clashing types cannot be stored (appends refuse them): leave the parts as they are
    count = 0
    for part, part_schema in schemas.items():
        if part_schema.equals(unified, check_metadata=False):
            continue
        table = columns.conform(pq.read_table(part), unified)
        with atomic.atomic_writer(part, durable=durable) as f:
            pq.write_table(table, f)
        count += 1
    return count
