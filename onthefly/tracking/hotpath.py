"""The metric logging hot path: ``exp.metrics("train").log(loss=x, step=i)``.

Two implementations with one behaviour: the C extension ``_hotpath`` (built by ``pip install -e .`` when a
compiler is present; ~2x faster per call) and the Python below, used when the extension is missing or
``ONTHEFLY_PURE_PYTHON=1`` is set. ``IMPLEMENTATION`` says which one runs.

``RowLogger.log(**fields)`` appends the row (the kwargs dict, its call time added under the metric's row
key) to the experiment's bounded buffer ``_q``, after calling ``_q.kick()`` when the rows waiting reach the
size trigger: ``q.tally.due(len(q))``, i.e. ``len(q) + tally.rows >= tally.kick_at`` (a :data:`Tally`).
The C implementation stores plain numeric rows in chunks instead (raw 8-byte values, one buffer item per
up to ``_chunk_rows`` rows, every row after a chunk's first counted in ``tally.rows``; see _hotpath.c),
which the writer turns into the same table.
Mutable values (tensors, arrays, lists, dicts) are snapshotted at call time. A positional dict of fields
goes through :func:`log_rows` in both implementations. ``Registry.__call__(name)`` returns
``_builders[name]``, and calls ``_get(...)`` for anything else (a new name, more arguments). The writer
thread's encoding has a C fast path too, ``columns`` (see ``columns.numeric_table``).
"""

from __future__ import annotations

import os
from time import time as _time

from onthefly.tracking import timestamps, values

_PLAIN = values.PLAIN


def log_rows(self, _data: dict | None = None, _time=_time, /, **fields):
    """The Python implementation of ``RowLogger.log`` (and the C one's path for a positional dict or a
    ``_ts`` field)."""
    q = self._q
    if q.tally.due(len(q)):
        q.kick()
    if _data is not None:
        fields = values.merged(_data, fields, "log()")
    for v in fields.values():
        if type(v) not in _PLAIN:
            values.snapshot_fields(fields)
            break
    t = _time()
    if "_ts" in fields:
        fields["_ts"] = timestamps.metric_ts(fields["_ts"], self._exp._started_at)
    elif "timestamp" in fields:
        timestamps.note_field(fields["timestamp"], t)
    else:
        timestamps.note(t, t)
    fields[self._row_key] = t  # the row itself is the queued item: see writer's docstring
    q.append(fields)
    return self


class _PyRowLogger:
    __slots__ = ("_q", "_row_key", "_chunk_rows")  # (no chunks in Python: _chunk_rows is not read)
    log = log_rows


class _PyTally:
    """A buffer's rows beyond its items (always 0 without chunks) and its size trigger."""

    __slots__ = ("rows", "kick_at")

    def __init__(self) -> None:
        self.rows = self.kick_at = 0

    def due(self, n: int) -> bool:
        """Whether a buffer of ``n`` items has reached the trigger."""
        return n + self.rows >= self.kick_at


class _PyRegistry:
    __slots__ = ("_builders",)

    def __call__(self, name=None, description=None, tags=None, metadata=None):
        try:
            return self._builders[name]
        except KeyError:
            return self._get(name, description, tags, metadata)


def _load():
    if os.environ.get("ONTHEFLY_PURE_PYTHON", "") not in ("", "0"):
        return _PyRowLogger, _PyRegistry, None, None, "python (ONTHEFLY_PURE_PYTHON is set)"
    try:
        from onthefly.tracking import _hotpath
    except ImportError:
        return _PyRowLogger, _PyRegistry, None, None, "python (the C extension is not built)"
    if not hasattr(getattr(_hotpath, "Tally", None), "due"):  # built from an older _hotpath.c
        return _PyRowLogger, _PyRegistry, None, None, "python (the C extension is out of date: pip install -e .)"

    class RowLogger(_hotpath.RowLogger):
        __slots__ = ()
        _log_slow = log_rows

        def _snapshot(self, fields: dict) -> None:
            values.snapshot_fields(fields)

    timestamps._c_last_time = _hotpath.last_time
    return RowLogger, _hotpath.Registry, _hotpath, _hotpath.columns, "c"


# columns(dicts: list, keys: tuple, size) -> None | list[(typecode, bytes)], the writer's encoding fast
# path (see columns.numeric_table); None when the extension is not in use. So are Chunk (the type of a
# chunk item in the buffer), seal_all(items, tally) (the writer seals the chunks it takes) and configure.
# Tally() is a buffer's row count and size trigger (C integers with the extension, which the chunk path
# updates without touching a Python object).
RowLogger, Registry, _c, columns, IMPLEMENTATION = _load()
Chunk = _c.Chunk if _c is not None else None
seal_all = _c.seal_all if _c is not None else None
configure = _c.configure if _c is not None else None
Tally = _c.Tally if _c is not None else _PyTally
