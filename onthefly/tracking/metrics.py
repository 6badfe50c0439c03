"""Metrics: ``exp.metrics("train").log(loss=0.4, accuracy=0.9, epoch=3)``, read back, summarized.

``log`` is the hot path: it appends the row (a dict) to the experiment's bounded buffer and returns. Values
are typed and stored by the writer thread; mutable values (tensors, arrays, lists) are copied at call time.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from onthefly.tracking import columns, names
from onthefly.tracking.hotpath import Registry, RowLogger
from onthefly.tracking.records import StreamKind
from onthefly.tracking.summary import summarize
from onthefly.tracking.writer import Sink

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment

DEFAULT_METRIC = "default"
# The most rows one chunk of plain numeric rows holds (the C hot path; the batch size when smaller): its
# memory grows by doubling up to this, 8 bytes per field and row plus the time.
CHUNK_ROWS_MAX = 4096


class MetricBuilder(RowLogger, Sink):
    """One named metric. Obtain it with ``exp.metrics(name)`` (cached: the same object every time).

    ``log(**fields)`` comes from :class:`~onthefly.tracking.hotpath.RowLogger` (in C when built): record
    one data point with any fields (``loss=0.4, step=10``) or a dict of them; ``_ts`` or ``timestamp``
    (seconds or a datetime) sets its time, ``_ts=-1`` reuses the previous point's time. Returns self."""

    __slots__ = ("_exp", "name", "kind", "description", "tags", "metadata", "_cache")

    def __init__(self, exp: "Experiment", name: str, description: str | None = None,
                 tags: list[str] | None = None, metadata: dict | None = None) -> None:
        self._exp = exp
        self._q = exp._queue_for_builders
        self.name = names.check_stream_name(name, "metric")
        self._row_key = columns.metric_row_key(self.name)
        config = exp._config
        self._chunk_rows = min(config.batch_size, CHUNK_ROWS_MAX) if config.buffered else 0
        self.kind = StreamKind.METRIC
        self.description, self.tags, self.metadata = description, tags, metadata
        self._cache = None

    # reading -------------------------------------------------------------------------------------------
    def flush(self) -> "MetricBuilder":
        """Write everything logged so far (all streams of the experiment); returns self for chaining."""
        self._exp.flush()
        return self

    def read_table(self, start_index: int = 0, limit: int | None = None) -> pa.Table:
        """Stored rows as an Arrow table (``.to_pandas()`` for pandas), in logging order."""
        self._exp._flush_for_read()
        table, _ = self._exp._backend_for_read().read(self._exp.prefix, self.kind, self.name, start_index, limit)
        return table

    def read(self, start_index: int = 0, limit: int = 1000) -> dict[str, Any]:
        """ML-Dash's shape: {"data": [{"index", "data", "timestamp", "createdAt"}], "startIndex",
        "endIndex", "total", "hasMore"}."""
        self._exp._flush_for_read()
        table, total = self._exp._backend_for_read().read(self._exp.prefix, self.kind, self.name, start_index,
                                                          limit)
        data = []
        for i, row in enumerate(columns.table_to_rows(table)):
            ts = row.pop(columns.TIMESTAMP, None)
            data.append({"index": start_index + i, "data": row, "timestamp": ts, "createdAt": _iso(ts)})
        end = start_index + len(data)
        return {"data": data, "startIndex": start_index, "endIndex": end - 1 if data else start_index,
                "total": len(data), "totalDataPoints": total, "hasMore": end < total}

    def summary(self) -> dict[str, dict[str, Any]]:
        """{field: {"count", "nan", "min", "max", "mean", "std", "first", "last"}} over all stored rows."""
        return summarize(self.read_table())

    def stats(self) -> dict[str, Any]:
        """Totals and time range (ML-Dash's keys) plus per-field statistics under "fields"."""
        table = self.read_table()
        ts = table.column(columns.TIMESTAMP) if table.num_rows else None
        return {"name": self.name, "description": self.description, "tags": self.tags or [],
                "metadata": self.metadata or {}, "totalDataPoints": table.num_rows,
                "firstDataAt": _iso(ts[0].as_py()) if ts is not None else None,
                "lastDataAt": _iso(ts[-1].as_py()) if ts is not None else None,
                "fields": summarize(table)}

    def list_all(self) -> list[dict[str, Any]]:
        """Every metric of the experiment with its row count."""
        return self._exp.metrics.list_all()

    # ML-Dash's in-memory aggregation -------------------------------------------------------------------
    def buffer(self, **kwargs) -> "MetricBuilder":
        """Accumulate values (not logged) for ``exp.metrics.buffer.log_summary()``."""
        self._exp.metrics.buffer._store(self.name, **kwargs)
        return self

    @property
    def summary_cache(self) -> "SummaryCache":
        """Per-metric accumulator: ``store(**values)``, ``set(**fields)``, ``summarize()``, ``peek()``."""
        if self._cache is None:
            self._cache = SummaryCache(self)
        return self._cache


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


AGGREGATES = {
    "mean": lambda v: sum(v) / len(v),
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
    "first": lambda v: v[0],
    "last": lambda v: v[-1],
    "std": lambda v: math.sqrt(sum((x - sum(v) / len(v)) ** 2 for x in v) / len(v)),
    "median": lambda v: _percentile(v, 50),
}


def _percentile(v: list[float], p: float) -> float:
    s = sorted(v)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def aggregate(name: str, v: list[float]) -> float:
    """One aggregate (mean, min, max, sum, count, first, last, std, median, pNN) of a list of numbers."""
    if name in AGGREGATES:
        return AGGREGATES[name](v)
    if name.startswith("p") and name[1:].replace(".", "", 1).isdigit():
        return _percentile(v, float(name[1:]))
    raise ValueError(f"unknown aggregate {name!r}: use {', '.join(AGGREGATES)} or pNN (e.g. p95)")


class SummaryCache:
    """Values kept in memory and logged as one summary row when ``summarize()`` is called."""

    def __init__(self, builder: MetricBuilder) -> None:
        self._builder = builder
        self._values: dict[str, list[float]] = {}
        self._fields: dict[str, Any] = {}

    def store(self, **kwargs) -> None:
        for k, v in kwargs.items():
            self._values.setdefault(k, []).append(float(v))

    def set(self, **kwargs) -> None:
        """Fields written as they are with the next summary (e.g. ``epoch=3``)."""
        self._fields.update(kwargs)

    def summarize(self, clear: bool = True, aggs: tuple[str, ...] = ("mean",)) -> None:
        row = dict(self._fields)
        for k, v in self._values.items():
            if v:
                for agg in aggs:
                    row[f"{k}.{agg}"] = aggregate(agg, v)
        if row:
            self._builder.log(**row)
        if clear:
            self._values.clear()
            self._fields.clear()

    def peek(self, *keys: str, limit: int = 5) -> dict[str, list[float]]:
        wanted = keys or tuple(self._values)
        return {k: self._values.get(k, [])[-limit:] for k in wanted}


class BufferManager:
    """``exp.metrics.buffer``: values accumulated with ``metrics(name).buffer(...)`` across metrics."""

    def __init__(self, metrics: "Metrics") -> None:
        self._metrics = metrics
        self._values: dict[str, dict[str, list[float]]] = {}

    def _store(self, name: str, **kwargs) -> None:
        slot = self._values.setdefault(name, {})
        for k, v in kwargs.items():
            slot.setdefault(k, []).append(float(v))

    def log_summary(self, *aggs: str, **fields) -> None:
        """Log, for every metric with buffered values, one row of ``<field>.<agg>`` (default: mean), plus
        ``fields``; then clear the buffer."""
        aggs = aggs or ("mean",)
        for agg in aggs:
            aggregate(agg, [0.0])  # validate before logging anything
        for name, slot in self._values.items():
            row = dict(fields)
            for k, v in slot.items():
                if v:
                    for agg in aggs:
                        row[f"{k}.{agg}"] = aggregate(agg, v)
            self._metrics(name).log(**row)
        self._values.clear()

    def peek(self, prefix: str | None = None, *keys: str, limit: int = 5) -> dict[str, list[float]]:
        out = {}
        for name, slot in self._values.items():
            if prefix is not None and name != prefix:
                continue
            for k, v in slot.items():
                if not keys or k in keys:
                    out[f"{name}.{k}" if prefix is None else k] = v[-limit:]
        return out


class Metrics(Registry):
    """``exp.metrics``: ``exp.metrics("train")`` returns that metric's builder; ``exp.metrics.log(epoch=1,
    train=dict(loss=0.1), eval=dict(loss=0.2))`` logs nested dicts to the metrics they name."""

    __slots__ = ("_exp", "_buffer")

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp
        self._builders: dict[str, MetricBuilder] = {}
        self._buffer: BufferManager | None = None

    # __call__(name) comes from hotpath.Registry (in C when built): self._builders[name], else _get(...).
    def _get(self, name: str | None = None, description: str | None = None, tags: list[str] | None = None,
             metadata: dict | None = None) -> MetricBuilder:
        try:
            return self._builders[name]
        except KeyError:
            pass
        self._exp._require_started("metrics()")
        key = name
        builder = MetricBuilder(self._exp, DEFAULT_METRIC if name is None else name, description, tags, metadata)
        builder = self._builders.setdefault(key, builder)
        self._exp._builders.append(builder)
        builder._q = self._exp._queue_for_builders
        return builder

    def log(self, _flush: bool = False, **kwargs) -> "Metrics":
        """Dict-valued keywords go to the metric they name, together with the other keywords; without
        dict values everything goes to the "default" metric."""
        nested = {k: v for k, v in kwargs.items() if isinstance(v, dict)}
        shared = {k: v for k, v in kwargs.items() if not isinstance(v, dict)}
        if nested:
            for name, fields in nested.items():
                self(name).log(**shared, **fields)
        else:
            self(None).log(**shared)
        if _flush:
            self._exp.flush()
        return self

    def flush(self) -> "Metrics":
        self._exp.flush()
        return self

    def list_all(self) -> list[dict[str, Any]]:
        """[{"name", "totalDataPoints", "fields"}] for every stored metric."""
        self._exp._flush_for_read()
        streams = self._exp._backend_for_read().streams(self._exp.prefix, StreamKind.METRIC)
        return [{"name": s.name, "totalDataPoints": s.rows, "fields": s.fields} for s in streams]

    def names(self) -> list[str]:
        return [m["name"] for m in self.list_all()]

    @property
    def buffer(self) -> BufferManager:
        if self._buffer is None:
            self._buffer = BufferManager(self)
        return self._buffer
