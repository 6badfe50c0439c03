"""The local store: a folder tree that owns everything the tracking SDK writes.

    <root>/<owner>/<project>/.../<name>/     one folder per experiment prefix
        experiment.json                      metadata, status and lifecycle history (atomic JSON)
        params.json                          flat dotted parameters (atomic JSON)
        logs/                                the log stream
        metrics/<encoded name>/              one folder per metric: part-*.parquet (+ _journal-*.arrows)
        tracks/<encoded name>/               one folder per track, same layout
        files/<id>/<filename>, <id>.json     stored files and their metadata

It implements the backend interface the SDK writes through (see ``backend.Backend``); the server stores
into one too. The store never removes anything but the journals, parts, files and temporary files it
wrote itself.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from onthefly.tracking import atomic, flat, jsonsafe, names
from onthefly.tracking.columns import TIMESTAMP
from onthefly.tracking.errors import FailedPrecondition, InvalidArgument, NotFound
from onthefly.tracking.filestore import STAGING_SUFFIX, FileStore
from onthefly.tracking.records import (LOG_STREAM, AppendResult, ExperimentRecord, FileRecord, OpenSpec, Status,
                                       StreamInfo, StreamKind)
from onthefly.tracking.streams import STREAM_META, Stream, recover_folder

EXPERIMENT_FILE = "experiment.json"
PARAMS_FILE = "params.json"
KIND_DIRS = {StreamKind.METRIC: "metrics", StreamKind.TRACK: "tracks", StreamKind.LOG: "logs"}
DATA_DIRS = frozenset({*KIND_DIRS.values(), "files"})


class LocalStore:
    """A store folder. Thread-safe; several processes may read it while one writes an experiment."""

    def __init__(self, root: str | os.PathLike, durable: bool = True, shared_writers: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.durable = durable
        self.shared_writers = shared_writers  # the tracking server: one process writes for many clients
        self._lock = threading.RLock()
        self._streams: dict[tuple[str, StreamKind, str], Stream] = {}
        self._files: dict[str, FileStore] = {}

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def address(self) -> str:
        return str(self.root)

    # experiments ---------------------------------------------------------------------------------------
    def experiment_dir(self, prefix: str) -> Path:
        return self.root.joinpath(*names.normalize_prefix(prefix).split("/"))

    def _check_placement(self, prefix: str) -> None:
        """An experiment may not live inside another experiment's data folders."""
        segments = prefix.split("/")
        here = self.root
        for i, segment in enumerate(segments[:-1]):
            here = here / segment
            if segments[i + 1] in DATA_DIRS and (here / EXPERIMENT_FILE).exists():
                raise InvalidArgument(f"prefix {prefix!r} would put an experiment inside the "
                                      f"'{segments[i + 1]}' folder of experiment {'/'.join(segments[:i + 1])!r}; "
                                      f"choose another name for that segment")

    def _read_record(self, prefix: str) -> ExperimentRecord | None:
        path = self.experiment_dir(prefix) / EXPERIMENT_FILE
        try:
            return ExperimentRecord.from_dict(jsonsafe.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (TypeError, ValueError, AttributeError) as exc:
            raise FailedPrecondition(
                f"{path} is not an OnTheFly experiment record (another tool's file, or damaged: {exc}); it is "
                f"left as it is: use another dash_root or prefix") from None

    def _write_record(self, record: ExperimentRecord) -> None:
        folder = self.experiment_dir(record.prefix)
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / EXPERIMENT_FILE, jsonsafe.dumps(record.to_dict(), "experiment", indent=1),
                          durable=self.durable)

    def open_experiment(self, spec: OpenSpec) -> tuple[ExperimentRecord, bool]:
        """Create the experiment or update it (upsert); recovers journals its earlier writers left behind."""
        prefix = names.normalize_prefix(spec.prefix)
        metadata = jsonsafe.plain(spec.metadata or {}, "metadata")
        if not isinstance(metadata, dict):
            raise InvalidArgument("metadata must be a dict")
        with self._lock:
            self._check_placement(prefix)
            record = self._read_record(prefix)
            created = record is None
            now = time.time()
            if record is None:
                record = ExperimentRecord(prefix=prefix, owner=names.owner_of(prefix), created_at=now)
            if spec.tags:
                record.tags = [str(t) for t in spec.tags]
            if spec.readme:
                record.readme = str(spec.readme)
            record.metadata.update(metadata)
            record.shared = bool(spec.shared)
            if spec.status is not None:
                note = "created" if created else "reopened"
                if not created and record.status is Status.RUNNING and record.process_gone():
                    record.add_history(Status.RUNNING, f"process {record.pid} ended without closing "
                                                       f"(killed or crashed)", record.pid, record.host)
                record.status, record.error = spec.status, ""
                record.add_history(spec.status, note, spec.pid, spec.host)
            record.pid, record.host, record.updated_at = spec.pid, spec.host, now
            self._write_record(record)
            self._recover(prefix)
            return record, created

    def _recover(self, prefix: str) -> None:
        folder = self.experiment_dir(prefix)
        for kind, dirname in KIND_DIRS.items():
            base = folder / dirname
            if kind is StreamKind.LOG:
                recover_folder(base, kind, self.durable)
                continue
            try:
                subs = os.listdir(base)
            except FileNotFoundError:
                continue
            for sub in subs:
                recover_folder(base / sub, kind, self.durable)

    def set_status(self, prefix: str, status: Status, error: str = "", note: str = "",
                   writer: dict[str, Any] | None = None) -> ExperimentRecord:
        """Record a lifecycle transition (and, at close, the writer's statistics)."""
        with self._lock:
            record = self.get_experiment(prefix)
            record.status, record.error, record.updated_at = Status(status), str(error or ""), time.time()
            record.add_history(record.status, note)
            if writer is not None:
                record.writer = jsonsafe.plain(writer, "writer")
            self._write_record(record)
            if record.status is not Status.RUNNING:
                self.close_streams(prefix)
            return record

    def get_experiment(self, prefix: str) -> ExperimentRecord:
        record = self._read_record(names.normalize_prefix(prefix))
        if record is None:
            raise NotFound(f"no experiment {prefix!r} in {self.root}")
        return record

    def list_experiments(self, under: str = "") -> list[ExperimentRecord]:
        """Every experiment at or below ``under`` (a prefix or a folder of prefixes), sorted by prefix."""
        start = self.root
        under = (under or "").strip("/")
        if under:
            for segment in under.split("/"):
                if segment in ("", ".", ".."):
                    raise InvalidArgument(f"bad prefix filter {under!r}")
            start = self.root.joinpath(*under.split("/"))
        out = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if EXPERIMENT_FILE in files:
                try:
                    data = jsonsafe.loads(Path(folder, EXPERIMENT_FILE).read_text("utf-8"))
                    out.append(ExperimentRecord.from_dict(data))
                except (OSError, ValueError, TypeError):
                    continue
                dirs[:] = [d for d in dirs if d not in DATA_DIRS]
        out.sort(key=lambda r: r.prefix)
        return out

    # params --------------------------------------------------------------------------------------------
    def set_params(self, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
        """Merge flat dotted parameters into the stored ones; returns the merged set."""
        with self._lock:
            self.get_experiment(prefix)
            merged = flat.merge_flat(self.get_params(prefix), jsonsafe.plain(values, "params"))
            atomic.write_text(self.experiment_dir(prefix) / PARAMS_FILE, jsonsafe.dumps(merged, "params", indent=1),
                              durable=self.durable)
            return jsonsafe.loads(jsonsafe.dumps(merged))

    def get_params(self, prefix: str) -> dict[str, Any]:
        try:
            text = (self.experiment_dir(prefix) / PARAMS_FILE).read_text("utf-8")
        except FileNotFoundError:
            return {}
        return jsonsafe.loads(text)

    # streams -------------------------------------------------------------------------------------------
    def _stream_folder(self, prefix: str, kind: StreamKind, name: str) -> Path:
        base = self.experiment_dir(prefix) / KIND_DIRS[kind]
        return base if kind is StreamKind.LOG else base / names.component(name)

    def stream(self, prefix: str, kind: StreamKind, name: str) -> Stream:
        kind = StreamKind(kind)
        name = LOG_STREAM if kind is StreamKind.LOG else names.check_stream_name(name, kind.value)
        key = (prefix, kind, name)
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                stream = Stream(self._stream_folder(prefix, kind, name), kind, name, self.durable,
                                self.shared_writers)
                self._streams[key] = stream
            return stream

    def append(self, prefix: str, kind: StreamKind, name: str, table: pa.Table, replace: bool = False) -> AppendResult:
        if self._read_record(names.normalize_prefix(prefix)) is None:
            raise NotFound(f"no experiment {prefix!r}: open it before writing rows")
        if TIMESTAMP not in table.column_names:
            raise InvalidArgument("rows need a float64 'timestamp' column (seconds)")
        return self.stream(prefix, kind, name).append(table, replace)

    def read(self, prefix: str, kind: StreamKind, name: str, start: int = 0, limit: int | None = None,
             start_time: float | None = None, end_time: float | None = None) -> tuple[pa.Table, int]:
        """(rows, total) of one stream: filtered to [start_time, end_time], then sliced by start/limit."""
        self.get_experiment(prefix)
        stream = self.stream(prefix, kind, name)
        if not (stream.folder / STREAM_META).exists() and kind is not StreamKind.LOG:
            raise NotFound(f"experiment {prefix!r} has no {StreamKind(kind).value} named {name!r}")
        table = stream.table()
        if start_time is not None or end_time is not None:
            ts = table.column(TIMESTAMP)
            mask = None
            if start_time is not None:
                mask = pc.greater_equal(ts, start_time)
            if end_time is not None:
                upper = pc.less_equal(ts, end_time)
                mask = upper if mask is None else pc.and_(mask, upper)
            table = table.filter(mask)
        total = table.num_rows
        start = max(0, int(start or 0))
        table = table.slice(start, limit if limit is not None and limit >= 0 else None)
        return table, total

    def streams(self, prefix: str, kind: StreamKind | None = None) -> list[StreamInfo]:
        self.get_experiment(prefix)
        out = []
        folder = self.experiment_dir(prefix)
        for k, dirname in KIND_DIRS.items():
            if kind is not None and StreamKind(kind) is not k:
                continue
            if k is StreamKind.LOG:
                rows, fields = self.stream(prefix, k, LOG_STREAM).info()
                if rows:
                    out.append(StreamInfo(k, LOG_STREAM, rows, fields))
                continue
            try:
                subs = sorted(os.listdir(folder / dirname))
            except FileNotFoundError:
                continue
            found = []
            for sub in subs:
                try:
                    meta = jsonsafe.loads((folder / dirname / sub / STREAM_META).read_text("utf-8"))
                except (FileNotFoundError, NotADirectoryError, ValueError):
                    continue
                rows, fields = self.stream(prefix, k, meta["name"]).info()
                found.append(StreamInfo(k, meta["name"], rows, fields))
            out += sorted(found, key=lambda s: s.name)
        return out

    def flush(self, prefix: str | None = None, durable: bool = True) -> None:
        """fsync the open journals (of one experiment, or all) when ``durable``."""
        if not durable:
            return
        with self._lock:
            streams = [s for (p, _, _), s in self._streams.items() if prefix is None or p == prefix]
        for stream in streams:
            stream.sync()

    def close_streams(self, prefix: str) -> None:
        """Close this process's journals of an experiment, turning them into Parquet parts."""
        with self._lock:
            streams = [s for (p, _, _), s in self._streams.items() if p == prefix]
        for stream in streams:
            stream.close()

    # files ---------------------------------------------------------------------------------------------
    def _filestore(self, prefix: str) -> FileStore:
        with self._lock:
            store = self._files.get(prefix)
            if store is None:
                store = self._files[prefix] = FileStore(self.experiment_dir(prefix) / "files", self.durable)
            return store

    def staging_dir(self) -> Path:
        """Where uploads are copied at call time before they are stored (same file system as the store)."""
        folder = self.root / ".staging"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put_file(self, prefix: str, record: FileRecord, source: Path) -> FileRecord:
        self.get_experiment(prefix)
        move = str(source).endswith(STAGING_SUFFIX)
        return self._filestore(prefix).put(record, Path(source), move=move)

    def list_files(self, prefix: str) -> list[FileRecord]:
        self.get_experiment(prefix)
        return self._filestore(prefix).list()

    def open_file(self, prefix: str, file_id: str) -> tuple[FileRecord, Path]:
        """(metadata, path of the stored content) of one file."""
        self.get_experiment(prefix)
        return self._filestore(prefix).get(file_id)

    def read_file(self, prefix: str, file_id: str, dest: BinaryIO) -> FileRecord:
        self.get_experiment(prefix)
        return self._filestore(prefix).read_into(file_id, dest)

    def update_file(self, prefix: str, file_id: str, description: str | None = None,
                    tags: list[str] | None = None, metadata: dict | None = None) -> FileRecord:
        self.get_experiment(prefix)
        return self._filestore(prefix).update(file_id, description, tags, metadata)

    def delete_file(self, prefix: str, file_id: str) -> FileRecord:
        self.get_experiment(prefix)
        return self._filestore(prefix).delete(file_id)

    def close(self) -> None:
        """Close every open journal (turning them into parts)."""
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()
