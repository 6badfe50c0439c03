"""Metrics: ``exp.metrics("train").log(loss=0.4, accuracy=0.9, epoch=3)``, read back, summarized.

``log`` is the hot path: it appends the row (a dict) to the experiment's bounded buffer and returns. Values
are typed and stored by the writer thread; mutable values (tensors, arrays, lists) are copied at call time.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from onthefly.tracking import columns, names, timestamps
from onthefly.tracking.errors import NotFound
from onthefly.tracking.hotpath import Registry, RowLogger
from onthefly.tracking.records import StreamKind
from onthefly.tracking.summary import summarize
from onthefly.tracking.writer import Sink

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment

# The unnamed metric (``metrics(None)``, ``metrics.log(...)``'s scalars) is stored under this name, as ML-Dash does,
# so ``metrics("None")`` reads it too; its stats show name None.
DEFAULT_METRIC = "None"
# The most rows one chunk of plain numeric rows holds (the C hot path; the batch size when smaller): its
# memory grows by doubling up to this, 8 bytes per field and row plus the time.
CHUNK_ROWS_MAX = 4096


def _shown(name: str) -> str | None:
    """The name a reader sees: None for the unnamed metric (ML-Dash's stats show it so)."""
    return None if name == DEFAULT_METRIC else name


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
        """ML-Dash's shape: {"data": [{"index", "data" (the fields and ``_ts``), "createdAt"}], "startIndex",
        "endIndex", "total", "hasMore"}, plus "totalDataPoints". Unlike ML-Dash, "total" is the number of
        stored points (theirs repeats the number returned), and everything logged so far is readable."""
        self._exp._flush_for_read()
        try:
            table, total = self._exp._backend_for_read().read(self._exp.prefix, self.kind, self.name, start_index,
                                                              limit)
        except NotFound:
            table, total = None, 0
        data = []
        for i, row in enumerate(columns.table_to_rows(table) if table is not None else ()):
            ts = row.pop(columns.TIMESTAMP, None)
            row["_ts"] = ts
            data.append({"index": start_index + i, "data": row, "createdAt": iso_z(ts)})
        end = start_index + len(data)
        return {"data": data, "startIndex": start_index, "endIndex": end - 1, "total": total,
                "totalDataPoints": total, "hasMore": end < total}

    def summary(self) -> dict[str, dict[str, Any]]:
        """{field: {"count", "nan", "min", "max", "mean", "std", "first", "last"}} over all stored rows."""
        return summarize(self.read_table())

    def stats(self) -> dict[str, Any]:
        """ML-Dash's keys (counts as strings, as theirs), plus per-field statistics under "fields"."""
        table = self.read_table()
        ts = table.column(columns.TIMESTAMP) if table.num_rows else None
        first = iso_z(ts[0].as_py()) if ts is not None else None
        last = iso_z(ts[-1].as_py()) if ts is not None else None
        return {"metricId": f"local-metric-{self.name}", "name": _shown(self.name), "description": self.description,
                "tags": self.tags or [], "metadata": self.metadata, "totalDataPoints": str(table.num_rows),
                "bufferedDataPoints": str(table.num_rows), "chunkedDataPoints": "0", "totalChunks": 0,
                "chunkSize": 10000, "firstDataAt": first, "lastDataAt": last, "createdAt": first,
                "updatedAt": last, "fields": summarize(table)}

    def list_all(self) -> list[dict[str, Any]]:
        """Every metric of the experiment: [{"metricId", "name", "description", "tags", "totalDataPoints",
        "createdAt"}] (ML-Dash's keys) plus "fields"."""
        return self._exp._metrics.list_all()

    # ML-Dash's in-memory aggregation -------------------------------------------------------------------
    def buffer(self, **kwargs) -> "MetricBuilder":
        """Accumulate values (not logged) for ``exp.metrics.buffer.log_summary()``."""
        metrics = self._exp._metrics
        metrics.buffer._store(None if metrics._builders.get(None) is self else self.name, **kwargs)
        return self

    @property
    def summary_cache(self) -> "SummaryCache":
        """Per-metric accumulator: ``store(**values)``, ``set(**fields)``, ``summarize()``, ``peek()``."""
        if self._cache is None:
            self._cache = SummaryCache(self)
        return self._cache


def iso_z(ts: float | None) -> str | None:
    """ML-Dash's time format: naive UTC ISO-8601 with a literal Z ("2026-01-02T03:04:05.123456Z")."""
    if ts is None or not math.isfinite(ts):
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


AGGREGATES = ("mean", "std", "min", "max", "count", "median", "sum", "p50", "p90", "p95", "p99", "first", "last")


def _percentile(v: list[float], p: float) -> float:
    s = sorted(v)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = lo + 1 if lo + 1 < len(s) else lo
    return s[lo] + (k - lo) * (s[hi] - s[lo])


def aggregate(name: str, v: list[float]) -> float:
    """One aggregate of a non-empty list of numbers, as ML-Dash computes it: std is the sample standard
    deviation (0.0 for one value), median/p50 the middle value, pNN linear interpolation (any NN here)."""
    if name == "mean":
        return statistics.mean(v)
    if name == "std":
        return statistics.stdev(v) if len(v) >= 2 else 0.0
    if name in ("median", "p50"):
        return statistics.median(v)
    if name == "min":
        return min(v)
    if name == "max":
        return max(v)
    if name == "sum":
        return sum(v)
    if name == "count":
        return len(v)
    if name == "first":
        return v[0]
    if name == "last":
        return v[-1]
    if name.startswith("p") and name[1:].replace(".", "", 1).isdigit() and float(name[1:]) <= 100:
        return _percentile(v, float(name[1:]))
    raise ValueError(f"unknown aggregation {name!r}: use one of {', '.join(AGGREGATES)} (or pNN, e.g. p75)")


def _as_float(key: str, value: Any) -> float:
    """A buffered value as a float (None counts as NaN); ValueError for anything non-numeric."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cannot buffer the non-numeric value {value!r} ({type(value).__name__}) of {key!r}: "
                         f"buffers aggregate numbers; log other values with exp.log() or metrics().log()") \
            from None


def _finite_or_inf(values: list[float]) -> list[float]:
    return [x for x in values if x == x]  # NaN dropped, as in ML-Dash


class SummaryCache:
    """``metrics(name).summary_cache``: values kept in memory and logged as one row of
    ``<key>.mean/min/max/count/std`` (plus what ``set`` gave) when ``summarize()`` is called."""

    def __init__(self, builder: MetricBuilder) -> None:
        self._builder = builder
        self._values: dict[str, list[float]] = {}
        self._fields: dict[str, Any] = {}
        self._pending = 0

    def store(self, **kwargs) -> None:
        """Accumulate numbers (None counts as NaN and is left out of the statistics)."""
        for k, v in kwargs.items():
            self._values.setdefault(k, []).append(_as_float(k, v))
            self._pending += 1

    def set(self, **kwargs) -> None:
        """Fields written as they are with the next summary (e.g. ``epoch=3``); replaces earlier ones."""
        self._fields.update(kwargs)

    def summarize(self, clear: bool = True) -> None:
        """Log one row: the ``set`` fields and, per stored key, mean, min, max, count and std."""
        if not self._values and not self._fields:
            return
        row = dict(self._fields)
        for k, v in self._values.items():
            clean = _finite_or_inf(v)
            if clean:
                for agg in ("mean", "min", "max", "count", "std"):
                    row[f"{k}.{agg}"] = aggregate(agg, clean)
        if row:
            self._builder.log(**row)
        self._pending = 0
        if clear:
            self._values.clear()
            self._fields.clear()

    def peek(self, *keys: str, limit: int = 5) -> dict[str, list[float]]:
        """The latest ``limit`` stored values per key (all keys by default), without consuming them."""
        wanted = keys or tuple(self._values)
        return {k: (self._values[k][-limit:] if limit else self._values[k]) for k in wanted
                if self._values.get(k)}


class BufferManager:
    """``exp.metrics.buffer``: values accumulated with ``metrics(name).buffer(...)`` across metrics."""

    def __init__(self, metrics: "Metrics") -> None:
        self._metrics = metrics
        self._values: dict[str | None, dict[str, list[float]]] = {}

    def _store(self, name: str | None, **kwargs) -> None:
        slot = self._values.setdefault(name, {})
        for k, v in kwargs.items():
            slot.setdefault(k, []).append(_as_float(k, v))

    def log_summary(self, *aggs: str, **fields) -> None:
        """Log, for every metric with buffered values, one row of ``<key>.<agg>`` (default: mean; NaN left
        out) plus ``fields`` as they are; then clear every buffer."""
        aggs = aggs or ("mean",)
        for agg in aggs:
            aggregate(agg, [0.0])  # validate before logging anything
        for name, slot in list(self._values.items()):
            if not slot:
                continue
            row = dict(fields)
            for k, v in slot.items():
                clean = _finite_or_inf(v)
                if clean:
                    for agg in aggs:
                        row[f"{k}.{agg}"] = aggregate(agg, clean)
            if row:
                self._metrics(name).log(**row)
        self._values.clear()

    def peek(self, prefix: str | None = None, *keys: str, limit: int = 5) -> dict[str, list[float]]:
        """Buffered values without consuming them: ``{key: [...]}`` for one metric, or
        ``{"<metric>/<key>": [...]}`` for all ("(default)" for the unnamed one)."""
        if prefix is not None:
            slot = self._values.get(prefix, {})
            return {k: (slot[k][-limit:] if limit else slot[k]) for k in (keys or slot) if slot.get(k)}
        out = {}
        for name, slot in self._values.items():
            for k in (keys or slot):
                if slot.get(k):
                    out[f"{name if name else '(default)'}/{k}"] = slot[k][-limit:] if limit else slot[k]
        return out

    def _unsummarized(self) -> int:
        return sum(len(v) for slot in self._values.values() for v in slot.values())


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
        # None and "None" name the same stored metric: one builder for both (one writer of its rows)
        alias = self._builders.get(DEFAULT_METRIC if name is None else None) if name in (None, DEFAULT_METRIC) \
            else None
        if alias is not None:
            return self._builders.setdefault(name, alias)
        builder = MetricBuilder(self._exp, DEFAULT_METRIC if name is None else name, description, tags, metadata)
        builder = self._builders.setdefault(name, builder)
        self._exp._builders.append(builder)
        builder._q = self._exp._queue_for_builders
        return builder

    def log(self, _flush: bool = False, **kwargs) -> "Metrics":
        """The unnamed metric gets the non-dict keywords; each dict-valued keyword ``k=dict(...)`` becomes a
        row of metric ``k``, together with the non-dict keywords (as in ML-Dash)."""
        ts = kwargs.pop("_ts", None)
        nested = {k: v for k, v in kwargs.items() if isinstance(v, dict)}
        shared = {k: v for k, v in kwargs.items() if not isinstance(v, dict)}
        if ts is not None:
            ts = timestamps.metric_ts(ts, self._exp._started_at)  # one time for every row of the call
        extra = {} if ts is None else {"_ts": ts}
        if shared:
            self(None).log(**shared, **extra)
        for name, fields in nested.items():
            self(name).log(**{**shared, **fields}, **extra)
        if _flush:
            self._exp.flush()
        return self

    def flush(self) -> "Metrics":
        self._exp.flush()
        return self

    def list_all(self) -> list[dict[str, Any]]:
        """Every stored metric: ML-Dash's keys ("metricId", "name", "description", "tags",
        "totalDataPoints" (a string, as theirs), "createdAt") plus "fields"."""
        self._exp._flush_for_read()
        streams = self._exp._backend_for_read().streams(self._exp.prefix, StreamKind.METRIC)
        out = []
        for s in streams:
            builder = self._builders.get(s.name if s.name != DEFAULT_METRIC else None)
            out.append({"metricId": f"local-metric-{s.name}", "name": _shown(s.name),
                        "description": getattr(builder, "description", None), "tags": getattr(builder, "tags", None) or [],
                        "totalDataPoints": str(s.rows), "createdAt": None, "fields": s.fields})
        return out

    def names(self) -> list[str]:
        return [m["name"] for m in self.list_all()]

    @property
    def buffer(self) -> BufferManager:
        if self._buffer is None:
            self._buffer = BufferManager(self)
        return self._buffer
