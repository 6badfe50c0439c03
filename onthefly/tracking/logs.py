"""Logs: ``exp.log("message", level="info", metadata={...})`` or ``exp.logs.info("message", gpu=0)``.

Levels are debug, info, warn, error and fatal ("warning" and "critical" are accepted as their aliases).
A log call appends to the experiment's buffer like a metric; messages and metadata are encoded (metadata
as standard JSON) on the writer thread.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from onthefly.tracking import columns, jsonsafe
from onthefly.tracking.errors import InvalidArgument
from onthefly.tracking.records import LOG_STREAM, StreamKind
from onthefly.tracking.writer import Sink

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment

LEVELS = ("debug", "info", "warn", "error", "fatal")
ALIASES = {"warning": "warn", "critical": "fatal", **{lvl: lvl for lvl in LEVELS}}
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def check_level(level: str | None) -> str:
    if level is None:
        return "info"
    found = ALIASES.get(level) if isinstance(level, str) else None
    if found is None:
        found = ALIASES.get(str(level).lower())
    if found is None:
        raise InvalidArgument(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return found


def _metadata_json(metadata: Any) -> str | None:
    if metadata is None:
        return None
    try:
        return _dumps(metadata)
    except (TypeError, ValueError):
        try:
            return jsonsafe.dumps(metadata, "log metadata")
        except TypeError as exc:
            return jsonsafe.dumps({"unserializable": str(exc)})


_SCHEMA = pa.schema([(columns.TIMESTAMP, pa.float64()), ("level", pa.string()), ("message", pa.string()),
                     ("metadata", pa.string())])


class LogSink(Sink):
    """The experiment's single log stream (the writer groups log items under it)."""

    __slots__ = ()
    kind = StreamKind.LOG
    name = LOG_STREAM

    def _encode(self, times, payloads, state) -> columns.Encoded:
        levels, messages, metadata = zip(*payloads)
        n = len(messages)
        if set(map(type, messages)) != {str}:
            messages = [m if type(m) is str else str(m) for m in messages]
        if metadata.count(None) == n:  # the usual case: messages without metadata
            meta = pa.nulls(n, pa.string())
        else:
            meta = pa.array([None if m is None else _metadata_json(m) for m in metadata], pa.string())
        table = pa.Table.from_arrays([pa.array(times, pa.float64()), pa.array(levels, pa.string()),
                                      pa.array(messages, pa.string()), meta], schema=_SCHEMA)
        return columns.Encoded(table)


LOG_SINK = LogSink()


class LogBuilder:
    """``exp.logs``: ``info/warn/warning/error/debug/fatal(message, **metadata)`` and ``read()``."""

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp

    def debug(self, message: Any, **metadata) -> None:
        self._exp.log(message, "debug", metadata or None)

    def info(self, message: Any, **metadata) -> None:
        self._exp.log(message, "info", metadata or None)

    def warn(self, message: Any, **metadata) -> None:
        self._exp.log(message, "warn", metadata or None)

    warning = warn

    def error(self, message: Any, **metadata) -> None:
        self._exp.log(message, "error", metadata or None)

    def fatal(self, message: Any, **metadata) -> None:
        self._exp.log(message, "fatal", metadata or None)

    def read_table(self, start_index: int = 0, limit: int | None = None) -> pa.Table:
        self._exp._flush_for_read()
        table, _ = self._exp._backend_for_read().read(self._exp.prefix, StreamKind.LOG, LOG_STREAM, start_index,
                                                      limit)
        return table

    def read(self, start_index: int = 0, limit: int | None = None, level: str | None = None) -> list[dict]:
        """[{"timestamp", "level", "message", "metadata"}] in logging order (``level``: that level and up)."""
        rows = columns.table_to_rows(self.read_table(start_index, limit))
        floor = LEVELS.index(check_level(level)) if level else 0
        out = []
        for row in rows:
            if LEVELS.index(row.get("level", "info")) < floor:
                continue
            meta = row.get("metadata")
            row["metadata"] = jsonsafe.loads(meta) if meta else None
            out.append(row)
        return out


def echo(level: str, message: Any, metadata: dict | None = None) -> None:
    """Print a log line as ML-Dash does, ``[LEVEL] message [k=v, ...]``: to stderr for error and fatal,
    else to stdout (on by default; ``Experiment(echo=False)`` or $ONTHEFLY_ECHO=0 turns it off)."""
    stream = sys.stderr if level in ("error", "fatal") else sys.stdout
    tail = f" [{', '.join(f'{k}={v}' for k, v in metadata.items())}]" if metadata else ""
    print(f"[{level.upper()}] {message}{tail}", file=stream)
