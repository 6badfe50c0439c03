"""Tracks: time series keyed by timestamp, ``exp.tracks("robot/position").append(step=7, x=0.1, y=0.2)``.

``_ts`` sets an entry's timestamp (seconds); ``_ts=-1`` reuses the previous entry's timestamp (across all
tracks); without it the call time is used, made unique per experiment (bumped by 1 µs on ties) so that
separate calls never merge by accident. Entries with the same timestamp merge into one row: a process's
later value for a field replaces its own earlier one; a value that differs from another process's is kept
as a separate entry (never overwritten). Reading is by time range and returns entries sorted by time.
"""

from __future__ import annotations

import bisect
import io
from time import time as _time
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from onthefly.tracking import columns, jsonsafe, names, timestamps, values
from onthefly.tracking.errors import ConfigurationError, NotFound, StorageError
from onthefly.tracking.records import StreamKind
from onthefly.tracking.writer import Sink

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment

_AUTO_STEP = 1e-6
_PLAIN = values.PLAIN


class TrackBuilder(Sink):
    """One named track. Obtain it with ``exp.tracks(name)`` (cached)."""

    __slots__ = ("_q", "_exp", "name", "kind", "description", "tags", "metadata")

    def __init__(self, exp: "Experiment", name: str, description: str | None = None,
                 tags: list[str] | None = None, metadata: dict | None = None) -> None:
        self._exp = exp
        self._q = exp._queue_for_builders
        self.name = names.check_stream_name(name, "track")
        self.kind = StreamKind.TRACK
        self.description, self.tags, self.metadata = description, tags, metadata

    def append(self, _data: dict | None = None, _time=_time, /, **fields) -> "TrackBuilder":
        """Add one entry: ``append(x=1.0, q=[0.1, 0.2])`` or ``append({"x": 1.0}, _ts=2.5)``. Returns self."""
        q = self._q
        if q.tally.due(len(q)):
            q.kick()
        if _data is not None:
            fields = values.merged(_data, fields, "append()")
        for v in fields.values():
            if type(v) not in _PLAIN:
                values.snapshot_fields(fields)
                break
        t = _time()
        if "_ts" in fields:  # resolved now: -1 is this thread's previous metric or track timestamp
            ts = timestamps.resolve(fields["_ts"], "tracks().append()", self._exp._started_at)
            if ts is None:
                del fields["_ts"]  # -1 before any call: the call time, as without _ts
                timestamps.note(t, t)
            else:
                fields["_ts"] = ts
                timestamps.note(ts, t)
        else:
            timestamps.note(t, t)
        q.append((self, t, fields))
        return self

    def _encode(self, times, payloads, state) -> columns.Encoded:
        merged: dict[float, dict] = {}
        reasons = []
        for t, fields in zip(times, payloads):
            explicit = fields.get("_ts", fields.get(columns.TIMESTAMP))
            if explicit is None:
                ts = t if t > state.last_auto_ts else state.last_auto_ts + _AUTO_STEP
                state.last_auto_ts = ts
            else:
                ts = columns._as_seconds(explicit)
                if ts == -1 and "_ts" in fields:
                    ts = state.last_ts
                if ts is None or ts != ts:
                    if explicit != -1:
                        reasons.append(f"timestamp {explicit!r} is not a number of seconds; the call time was used")
                    ts = t if t > state.last_auto_ts else state.last_auto_ts + _AUTO_STEP
                    state.last_auto_ts = ts
            state.last_ts = ts
            row = {k: v for k, v in fields.items() if k not in columns.TS_ALIASES}
            target = merged.get(ts)
            if target is None:
                merged[ts] = row
            else:
                target.update(row)
        encoded = columns.rows_to_table(list(merged), list(merged.values()))
        encoded.reasons = reasons + encoded.reasons
        return encoded

    # reading -------------------------------------------------------------------------------------------
    def flush(self) -> "TrackBuilder":
        self._exp.flush()
        return self

    def read_table(self, start_timestamp: float | None = None, end_timestamp: float | None = None,
                   columns_: list[str] | None = None) -> pa.Table:
        """Entries with start <= timestamp <= end (both optional), merged and sorted by time, as Arrow."""
        self._exp._flush_for_read()
        try:
            table, _ = self._exp._backend_for_read().read(self._exp.prefix, self.kind, self.name,
                                                          start_time=start_timestamp, end_time=end_timestamp)
        except NotFound:  # nothing appended yet: no entries, as in ML-Dash
            table = pa.table({columns.TIMESTAMP: pa.array([], pa.float64())})
        if columns_:  # the timestamp and those of the columns the track has, as in ML-Dash
            table = table.select([columns.TIMESTAMP, *[c for c in columns_ if c != columns.TIMESTAMP
                                                       and c in table.column_names]])
        return table

    def read(self, start_timestamp: float | None = None, end_timestamp: float | None = None,
             columns: list[str] | None = None, format: str = "json") -> Any:
        """``format``: "json" -> {"entries": [...], "count"}; "jsonl" -> bytes; "parquet" -> bytes (zstd);
        "mocap" -> {"version", "metadata", "channels", "frames"}; "table" -> pyarrow.Table. JSON output is
        standard: non-finite numbers as {"$float": "NaN"}."""
        table = self.read_table(start_timestamp, end_timestamp, columns)
        if format == "table":
            return table
        if format == "parquet":
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            return buf.getvalue()
        entries = _entries(table)
        if format == "json":
            return {"entries": entries, "count": len(entries)}
        if format == "jsonl":
            return "\n".join(jsonsafe.dumps(e) for e in entries).encode("utf-8")
        if format == "mocap":
            return self._mocap(entries)
        raise ConfigurationError(f"unknown format {format!r}: use json, jsonl, parquet, mocap or table")

    def _mocap(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """ML-Dash's motion-capture shape: one frame per entry, "time" for the timestamp."""
        if not entries:
            return {"version": "1.0", "metadata": {"topic": self.name, "frameCount": 0, "duration": 0,
                                                   "startTime": 0, "endTime": 0}, "channels": [], "frames": []}
        first, last = entries[0][columns.TIMESTAMP], entries[-1][columns.TIMESTAMP]
        fps = (self.metadata or {}).get("fps", 30) if isinstance(self.metadata, dict) else 30
        channels = sorted({k for e in entries for k in e if k != columns.TIMESTAMP})
        frames = [{"time": e[columns.TIMESTAMP], **{k: v for k, v in e.items() if k != columns.TIMESTAMP}}
                  for e in entries]
        return {"version": "1.0", "metadata": {"topic": self.name, "description": self.description,
                                               "tags": self.tags or [], "fps": fps, "duration": last - first,
                                               "frameCount": len(entries), "startTime": first, "endTime": last},
                "channels": channels, "frames": frames}

    def list_entries(self) -> list[dict[str, Any]]:
        return self.read()["entries"]

    def slice(self, start_timestamp: float | None = None, end_timestamp: float | None = None) -> "TrackSlice":
        """Entries in a time range, iterable, with ``findByTime`` (floor match)."""
        return TrackSlice(self, start_timestamp, end_timestamp)


def _entries(table: pa.Table) -> list[dict[str, Any]]:
    return columns.table_to_rows(table)


class TrackSlice:
    """Entries of a track in a time range; ``findByTime(t)`` returns the last entry at or before ``t``."""

    def __init__(self, track: TrackBuilder, start: float | None, end: float | None) -> None:
        self._track, self._start, self._end = track, start, end
        self._entries: list[dict] | None = None
        self._times: list[float] = []

    def _load(self) -> list[dict]:
        if self._entries is None:
            self._entries = _entries(self._track.read_table(self._start, self._end))
            self._times = [e[columns.TIMESTAMP] for e in self._entries]
        return self._entries

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def findByTime(self, timestamp: float | list[float]) -> Any:  # noqa: N802 - ML-Dash's name
        if isinstance(timestamp, list):
            return [self.findByTime(t) for t in timestamp]
        entries = self._load()
        i = bisect.bisect_right(self._times, float(timestamp)) - 1
        if i < 0:
            first = f"; the earliest is {self._times[0]}" if self._times else " (the slice is empty)"
            raise StorageError(f"no entry of track {self._track.name!r} at or before timestamp {timestamp}{first}")
        return entries[i]

    find_by_time = findByTime


class Tracks:
    """``exp.tracks``: ``exp.tracks("robot/position")`` returns that track's builder (cached)."""

    __slots__ = ("_exp", "_builders")

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp
        self._builders: dict[str, TrackBuilder] = {}

    def __call__(self, topic: str, description: str | None = None, tags: list[str] | None = None,
                 metadata: dict | None = None) -> TrackBuilder:
        builder = self._builders.get(topic)
        if builder is not None:
            return builder
        self._exp._require_started("tracks()")
        builder = self._builders.setdefault(topic, TrackBuilder(self._exp, topic, description, tags, metadata))
        self._exp._builders.append(builder)
        builder._q = self._exp._queue_for_builders
        return builder

    def flush(self) -> None:
        self._exp.flush()

    def list_all(self) -> list[dict[str, Any]]:
        self._exp._flush_for_read()
        streams = self._exp._backend_for_read().streams(self._exp.prefix, StreamKind.TRACK)
        return [{"name": s.name, "totalEntries": s.rows, "fields": s.fields} for s in streams]

