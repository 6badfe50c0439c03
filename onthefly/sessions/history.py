"""The session's history: every telemetry event and every per-sample loss, kept in the store.

The bus's pump thread hands resolved events to ``History.observe``; they are buffered and written as
chunks (``history/<session>/events-N.jsonl``, ``samples-N.arrow``, and ``metrics-N.feather``: the chunk's step
metrics and evaluation losses as columns, so a finished session's curves read back without parsing the
JSON; each file written atomically), so the
training thread never writes history and a killed process loses at most the unflushed tail. The
per-step metric history (step, loss, lr, grad norm, throughput, timings, user extras) and evaluation
results are also kept in memory: every checkpoint carries them, so a restored checkpoint knows the curve
that led to it, and ``metric_range`` serves any part of them to a dashboard that attaches late.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import enum
import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from onthefly.runtime.events import Event, EventKind
from onthefly.sessions.store import SessionFolder

log = logging.getLogger("onthefly")
# While the disk refuses writes, at most this many bytes of per-sample losses wait in memory; older ones
# are dropped and counted (``dropped_sample_rows``).
MAX_PENDING_SAMPLE_BYTES = 256 << 20

FLUSH_BYTES = 8 << 20
FLUSH_SECONDS = 30.0
SPLITS = ("train", "val", "test")
# Per-step columns besides step and epoch, in StepMetrics' field names (float64 each).
STEP_COLUMNS = ("loss", "lr", "grad_norm", "samples_per_second", "step_seconds", "data_seconds")


@dataclasses.dataclass
class MetricRange:
    """A copy of part of the metric history: ``series`` maps a series name ("loss", "extra/acc",
    "val/loss") to (steps int64, values float64); ``epochs`` is the epoch of each step in ``steps``;
    ``last_seq`` is the seq of the newest event the history had observed when the copy was taken."""

    steps: np.ndarray
    epochs: np.ndarray
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    last_seq: int
    total_steps: int


def samples_schema():
    """Arrow schema of per-sample loss chunks (pyarrow loads only when history is written or read)."""
    import pyarrow as pa

    return pa.schema([
        ("split", pa.dictionary(pa.int8(), pa.string())),
        ("step", pa.int64()),
        ("epoch", pa.int32()),
        ("index", pa.int64()),
        ("loss", pa.float32()),
    ])


def metrics_schema():
    """Arrow schema of a chunk's ``metrics-N.feather``: its step-metrics and evaluation rows in event order,
    with the fields of those events' JSON records that the stored reader needs (``onthefly stored``)."""
    import pyarrow as pa

    return pa.schema([("kind", pa.string()), ("step", pa.int64()), ("split", pa.string()),
                      *[(name, pa.float64()) for name in STEP_COLUMNS]])


def _metrics_ipc(rows: list[tuple]) -> bytes:
    import pyarrow as pa

    schema = metrics_schema()
    columns = list(zip(*rows))
    table = pa.table([pa.array(col, type=field.type) for col, field in zip(columns, schema)], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def event_record(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of one (resolved, non-sample) event. Runs on the pump thread for every event, so
    it reads the payload's fields directly: ``dataclasses.asdict`` deep-copies and cost 3x as much."""
    payload = event.payload
    if _is_record(payload):
        body = _record_fields(payload)
    else:
        body = {"value": repr(payload)}
    return {"seq": event.seq, "kind": event.kind.name.lower(), "step": event.step, "epoch": event.epoch,
            "time": event.time, **body}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_AS_IS = frozenset((int, float, str, bool, type(None)))


def _is_record(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _record_fields(record: Any) -> dict[str, Any]:
    as_is = _AS_IS
    return {name: value if type(value := getattr(record, name)) in as_is else _plain(value)
            for name in _field_names(type(record))}


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if _is_record(value):
        return _record_fields(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


class History:
    """Buffers a run's events into store chunks and keeps its metric history. Thread-safe."""

    def __init__(self, folder: SessionFolder | None, session_id: str, record_samples: bool = True,
                 flush_bytes: int = FLUSH_BYTES, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._folder = folder
        self._prefix = f"history/{session_id}"
        self._record_samples = record_samples
        self._flush_bytes = flush_bytes
        self._flush_seconds = flush_seconds
        self._lock = threading.RLock()
        self._events: list[str] = []
        self._metric_rows: list[tuple] = []  # the buffered events' step metrics and evaluations (metrics-N)
        self._samples: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []
        self._sample_bytes = 0
        self._chunk = 0
        self._last_flush = time.monotonic()
        self.sample_rows = 0
        self.event_count = 0
        self.last_seq = 0
        self.write_error = ""  # why the last flush failed ("" when it did not)
        self.dropped_sample_rows = 0
        # metric history (carried by checkpoints); steps ascend, except that a restore replaces it whole
        self._steps = array.array("q")
        self._epochs = array.array("q")
        self._columns = {name: array.array("d") for name in STEP_COLUMNS}
        self._extras: dict[str, tuple[array.array, array.array]] = {}
        self._evals: list[dict[str, Any]] = []

    # -- pump thread -----------------------------------------------------------------------------
    def observe(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                kind = event.kind
                if kind is EventKind.SAMPLE_LOSSES:
                    if self._record_samples:
                        p = event.payload
                        split = SPLITS.index(p.split) if p.split in SPLITS else 0
                        self._samples.append((split, event.step, event.epoch, p.indices, p.losses))
                        self._sample_bytes += p.nbytes()
                        self.sample_rows += len(p.losses)
                    continue
                if kind is EventKind.STEP_METRICS:
                    self._observe_step(event)
                elif kind is EventKind.EVAL_RESULT:
                    p = event.payload
                    self._evals.append({"step": event.step, "epoch": event.epoch, "split": p.split, "loss": p.loss,
                                        "samples": p.samples, "metrics": dict(p.metrics), "reason": p.reason})
                    self._metric_rows.append(("eval_result", event.step, p.split, _float(p.loss),
                                              None, None, None, None, None))
                self._events.append(json.dumps(event_record(event), allow_nan=True))
                self.event_count += 1
            if events:
                self.last_seq = max(self.last_seq, events[-1].seq)
            due = (self._sample_bytes >= self._flush_bytes or len(self._events) >= 50_000
                   or time.monotonic() - self._last_flush >= self._flush_seconds)
        if due:
            self.flush()

    def _observe_step(self, event: Event) -> None:
        p = event.payload
        self._steps.append(event.step)
        self._epochs.append(event.epoch)
        columns = self._columns
        columns["loss"].append(float(p.loss))
        columns["lr"].append(float(p.lr))
        columns["grad_norm"].append(float(p.grad_norm))
        columns["samples_per_second"].append(float(p.samples_per_second))
        columns["step_seconds"].append(float(p.step_seconds))
        columns["data_seconds"].append(float(p.data_seconds))
        self._metric_rows.append(("step_metrics", event.step, None, *(columns[name][-1] for name in STEP_COLUMNS)))
        for name, value in p.extra.items():
            steps, values = self._extras.setdefault(name, (array.array("q"), array.array("d")))
            steps.append(event.step)
            values.append(float(value))

    # -- any thread ------------------------------------------------------------------------------
    def flush(self) -> list[str]:
        """Write what is buffered as new chunks; returns their session-relative paths."""
        with self._lock:
            events, self._events = self._events, []
            metric_rows, self._metric_rows = self._metric_rows, []
            samples, self._samples = self._samples, []
            self._sample_bytes = 0
            self._last_flush = time.monotonic()
            if self._folder is None or (not events and not samples):
                return []
            self._chunk += 1
            written = []
            try:
                if events:
                    rel = f"{self._prefix}/events-{self._chunk:06d}.jsonl"
                    self._folder.write_bytes(rel, ("\n".join(events) + "\n").encode())
                    written.append(rel)
                    events = []
                    if metric_rows:  # a convenience copy: without it, readers parse the events file
                        rows, metric_rows = metric_rows, []
                        try:
                            side = f"{self._prefix}/metrics-{self._chunk:06d}.feather"
                            self._folder.write_bytes(side, _metrics_ipc(rows))
                            written.append(side)
                        except Exception as exc:  # noqa: BLE001 - never fails the flush; samples still go
                            log.debug("onthefly: the metric columns of history chunk %d were not written: %s",
                                      self._chunk, exc)
                if samples:
                    rel = f"{self._prefix}/samples-{self._chunk:06d}.arrow"
                    self._folder.write_bytes(rel, _samples_ipc(samples))
                    written.append(rel)
                    samples = []
            except OSError as exc:
                # A full disk must not end the run: keep what was not written for the next flush
                # (space may come back), and say so once per failure streak.
                self._events = events + self._events
                if events:  # the events file was not written: its metric rows go with it to the next flush
                    self._metric_rows = metric_rows + self._metric_rows
                if samples:  # not written (they go last): kept for the next flush
                    self._samples = samples + self._samples
                    self._sample_bytes += sum(s[3].nbytes + s[4].nbytes for s in samples)
                    while self._sample_bytes > MAX_PENDING_SAMPLE_BYTES and self._samples:
                        dropped = self._samples.pop(0)
                        self._sample_bytes -= dropped[3].nbytes + dropped[4].nbytes
                        self.dropped_sample_rows += len(dropped[4])
                if not self.write_error:
                    log.warning("onthefly: the session history could not be written (%s); it is kept in "
                                "memory and written when space returns", exc.strerror or exc)
                self.write_error = exc.strerror or str(exc)
                return written
            self.write_error = ""
            return written

    def metric_state(self) -> dict[str, Any]:
        """The metric history so far, for a checkpoint (columns as tensors, evaluations as data)."""
        with self._lock:
            return {
                "step": _column(self._steps, torch.int64),
                "epoch": _column(self._epochs, torch.int64),
                **{name: _column(values, torch.float64) for name, values in self._columns.items()},
                "extras": {name: {"step": _column(steps, torch.int64), "value": _column(values, torch.float64)}
                           for name, (steps, values) in self._extras.items()},
                "evals": [dict(e) for e in self._evals],
            }

    def load_metric_state(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's metric history (replacing what is in memory)."""
        if not state:
            return
        with self._lock:
            self._steps = array.array("q", state["step"].tolist())
            self._epochs = array.array("q", state["epoch"].tolist())
            n = len(self._steps)
            # Checkpoints written before a column existed lack it: NaN ("not recorded") keeps rows aligned.
            self._columns = {name: array.array("d", state[name].tolist()) if name in state else
                             array.array("d", [float("nan")]) * n for name in STEP_COLUMNS}
            self._extras = {name: (array.array("q", col["step"].tolist()), array.array("d", col["value"].tolist()))
                            for name, col in state.get("extras", {}).items()}
            self._evals = [dict(e) for e in state.get("evals", [])]

    def metric_range(self, names: Iterable[str] | None = None, start_step: int | None = None,
                     end_step: int | None = None) -> MetricRange:
        """A copy of the series named (all when ``names`` is None) for steps in [start_step, end_step]
        (open ends when None). Copies only the range, under the lock, so the pump waits microseconds."""
        wanted = None if names is None else set(names)
        lo_step = -(1 << 62) if start_step is None else start_step
        hi_step = 1 << 62 if end_step is None else end_step
        with self._lock:
            lo, hi = _index_range(self._steps, lo_step, hi_step)
            steps = _copy(self._steps, lo, hi, np.int64)
            series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name, values in self._columns.items():
                if wanted is None or name in wanted:
                    series[name] = (steps, _copy(values, lo, hi, np.float64))
            for name, (ext_steps, values) in self._extras.items():
                if wanted is None or f"extra/{name}" in wanted:
                    a, b = _index_range(ext_steps, lo_step, hi_step)
                    series[f"extra/{name}"] = (_copy(ext_steps, a, b, np.int64), _copy(values, a, b, np.float64))
            for key, (x, y) in _eval_series(self._evals, lo_step, hi_step).items():
                if wanted is None or key in wanted:
                    series[key] = (x, y)
            return MetricRange(steps, _copy(self._epochs, lo, hi, np.int64), series, self.last_seq, len(self._steps))

    @property
    def metric_steps(self) -> int:
        with self._lock:
            return len(self._steps)


def _index_range(steps: array.array, lo_step: int, hi_step: int) -> tuple[int, int]:
    return bisect.bisect_left(steps, lo_step), bisect.bisect_right(steps, hi_step)


def _copy(values: array.array, lo: int, hi: int, dtype) -> np.ndarray:
    # Slicing the array.array copies it: a numpy view of the live array would pin its buffer, and the
    # pump's next append would then fail ("cannot resize an array that is exporting buffers").
    return np.frombuffer(values[lo:hi], dtype=dtype)


def _eval_series(evals: list[dict[str, Any]], lo_step: int, hi_step: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    points: dict[str, tuple[list[int], list[float]]] = {}
    for e in evals:
        if not lo_step <= e["step"] <= hi_step:
            continue
        for metric, value in [("loss", e["loss"]), *e["metrics"].items()]:
            xs, ys = points.setdefault(f"{e['split']}/{metric}", ([], []))
            xs.append(e["step"])
            ys.append(float(value))
    return {k: (np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.float64)) for k, (xs, ys) in points.items()}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _column(values: array.array, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(values, dtype=np.int64 if dtype == torch.int64 else np.float64).copy())


def _samples_ipc(samples: list[tuple[int, int, int, np.ndarray, np.ndarray]]) -> bytes:
    import pyarrow as pa
    import pyarrow.ipc

    schema = samples_schema()
    lengths = [len(losses) for *_, losses in samples]
    split = np.repeat(np.array([s[0] for s in samples], dtype=np.int8), lengths)
    step = np.repeat(np.array([s[1] for s in samples], dtype=np.int64), lengths)
    epoch = np.repeat(np.array([s[2] for s in samples], dtype=np.int32), lengths)
    index = np.concatenate([np.asarray(s[3], dtype=np.int64) for s in samples])
    loss = np.concatenate([np.asarray(s[4], dtype=np.float32) for s in samples])
    table = pa.table({
        "split": pa.DictionaryArray.from_arrays(pa.array(split), pa.array(list(SPLITS))),
        "step": step, "epoch": epoch, "index": index, "loss": loss,
    }, schema=schema)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_sample_losses(paths: Iterable[str | Path | bytes]):
    """Concatenate per-sample loss chunks (paths, or the chunks' bytes) into one pyarrow Table."""
    import pyarrow as pa
    import pyarrow.ipc

    tables = []
    for item in paths:
        source = pa.BufferReader(item) if isinstance(item, bytes) else pa.memory_map(str(item))
        tables.append(pa.ipc.open_file(source).read_all())
    return pa.concat_tables(tables) if tables else samples_schema().empty_table()


def read_events(paths: Iterable[str | Path | bytes]) -> list[dict[str, Any]]:
    """Events from JSON-lines chunks, in order."""
    out = []
    for item in paths:
        text = item.decode() if isinstance(item, bytes) else Path(item).read_text()
        out.extend(json.loads(line) for line in text.splitlines() if line)
    return out
