"""Rows (dicts the user logged) to Arrow tables and back; the writer thread's encoding work.

Every table has a float64 ``timestamp`` column (seconds) first, then the user's fields in first-seen
order. Nested dicts become dotted columns ("model.depth"). Numbers stay int64 while every value is an
int and become float64 otherwise; NaN and +/-Inf are stored as they are. A value that does not fit the
column's type (a string in a float column) is refused with its row, and the refusal is reported.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from onthefly.tracking.hotpath import columns as fast_columns
from onthefly.tracking.hotpath import configure as _configure_chunks

TIMESTAMP = "timestamp"
TS_ALIASES = ("_ts", TIMESTAMP)

# A queued metric row is the field dict itself, with its call time added under the metric's row key:
# ROW_KEY_PREFIX + the metric's name, interned. A str key keeps the kwargs dict in its all-str-keys form
# (any other key makes CPython convert the dict, ~0.1 µs a call), and neither it nor the float time is
# tracked by the garbage collector, so the row dict stays untracked too (see writer's docstring). It is
# normally the row's last key, which tells the writer the metric, and it is never stored as a field.
# No field name may start with ROW_KEY_PREFIX (NULs around it: no one types that by accident):
# rows_to_table refuses a row with such a field, with why, so no row is stored under the wrong metric. One
# case stays unchecked, as a check would cost ~5% of every logging call (measured): a field named exactly
# like its own metric's row key takes that key's place in the row, and the call time overwrites its value.
ROW_KEY_PREFIX = "\x00onthefly.row\x00"
METRIC_OF_ROW_KEY: dict[str, str] = {}
if _configure_chunks is not None:  # a field a chunk must not hold: a timestamp alias, the row-key prefix
    _configure_chunks(frozenset(TS_ALIASES), ROW_KEY_PREFIX)


def metric_row_key(name: str) -> str:
    """The row key of metric ``name``."""
    key = sys.intern(ROW_KEY_PREFIX + name)
    METRIC_OF_ROW_KEY.setdefault(key, name)  # atomic under the GIL
    return key


@dataclass
class Encoded:
    """A batch encoded for one stream: the table, and the rows refused with why."""

    table: pa.Table
    refused: int = 0
    reasons: list[str] = field(default_factory=list)


def _scalar(value: Any) -> Any:
    """A Python value pyarrow can type: numpy/torch scalars and arrays become numbers and lists."""
    if value is None or type(value) in (float, int, str, bool):
        return value
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scalar(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if tolist is not None and getattr(value, "shape", None) is not None:
        try:
            return tolist()  # numpy array or torch tensor (0-d gives a number)
        except Exception:  # noqa: BLE001 - fall through to item()/str checks below
            pass
    item = getattr(value, "item", None)
    if item is not None:
        try:
            return item()
        except Exception:  # noqa: BLE001
            pass
    for base in (bool, int, float, str):  # subclasses such as str-valued enums
        if isinstance(value, base):
            return base(value)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "struct"
    return type(value).__name__


# Arrow types of columns whose values are all of these Python types (None allowed), as pyarrow would infer
# them. Passing the type skips pyarrow's inference, which also tries to import dateutil on every call
# where it is not installed (a file-system search costing ~0.5 ms per column, i.e. per write).
_TYPES = {frozenset({float}): pa.float64(), frozenset({int}): pa.int64(), frozenset({int, float}): pa.float64(),
          frozenset({str}): pa.string(), frozenset({bool}): pa.bool_()}
_NONE = type(None)


def _column(name: str, values: list) -> tuple[pa.Array | None, list[int], str]:
    """Arrow array for one column; on a type clash returns the array of the majority kind, the rows that
    do not fit (their value is nulled here; the caller drops those rows) and why."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    known = _TYPES.get(frozenset(kinds))
    if known is not None:
        try:
            return pa.array(values, known), [], ""
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass  # e.g. an int beyond int64: the general path below decides
    try:
        return pa.array(values), [], ""
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    values = [_scalar(v) for v in values]
    try:
        return pa.array(values), [], ""
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    kinds = [_kind(v) for v in values]
    counts: dict[str, int] = {}
    for k in kinds:
        if k != "null":
            counts[k] = counts.get(k, 0) + 1
    keep = max(counts, key=lambda k: (counts[k], k == "number"))
    bad = [i for i, k in enumerate(kinds) if k not in ("null", keep)]
    if keep == "number":  # bools among numbers are numbers; ints overflowing int64 become floats
        values = [float(v) if k in ("number", "bool") else None for v, k in zip(values, kinds)]
        bad = [i for i, k in enumerate(kinds) if k not in ("null", "number", "bool")]
    else:
        values = [v if k == keep else None for v, k in zip(values, kinds)]
    others = sorted({kinds[i] for i in bad})
    reason = (f"field {name!r} holds {keep} values; {len(bad)} row(s) with {', '.join(others)} values were "
              f"refused (log one type per field, or use another field name)") if bad else ""
    try:
        return pa.array(values), bad, reason
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        return None, list(range(len(values))), f"field {name!r}: values cannot be stored ({exc})"


def _flatten_structs(names: list[str], arrays: list[pa.Array]) -> tuple[list[str], list[pa.Array]]:
    out_names, out_arrays = [], []
    for name, array in zip(names, arrays):
        if pa.types.is_struct(array.type):
            children = array.flatten()
            sub = [f"{name}.{array.type.field(i).name}" for i in range(array.type.num_fields)]
            n2, a2 = _flatten_structs(sub, children)
            out_names += n2
            out_arrays += a2
        else:
            out_names.append(name)
            out_arrays.append(array)
    return out_names, out_arrays


def _keys(dicts: Sequence[dict]) -> list[str]:
    """Union of keys in first-seen order."""
    return list(dict.fromkeys(chain.from_iterable(dicts)))


def _uniform_columns(dicts: Sequence[dict], row_key: str | None) -> dict[Any, list] | None:
    """{key: values} when every dict has exactly the first one's keys (the usual case: the same fields on
    every call), else None. Equal sizes plus every dict holding each of the first one's keys means equal
    key sets; both checks run in C (itemgetter raises KeyError on a missing key). The row key is in every
    row (see rows_to_table), so its column is not extracted (None stands for it)."""
    if len(set(map(len, dicts))) != 1:
        return None
    try:
        return {k: None if k == row_key else list(map(itemgetter(k), dicts)) for k in dicts[0]}
    except KeyError:
        return None


_BUFFER_TYPES = {"d": pa.float64(), "q": pa.int64()}


def numeric_table(dicts: list[dict], state, row_key: str) -> Encoded | None:
    """The usual metric batch in a few calls (the C extension's ``columns``): rows of one metric (all with
    ``row_key`` and the first row's keys, nothing more) whose fields are plain floats or ints, none of them
    a timestamp alias or a reserved name. The timestamps are the row key's values (the call times). None
    when the batch is anything else (or the extension is not in use): rows_to_table's general path gives
    the same table for these rows."""
    if fast_columns is None or not dicts or type(dicts) is not list:
        return None
    first = dicts[0]
    keys = [k for k in first if k != row_key]
    for k in keys:
        if type(k) is not str or k in TS_ALIASES or k.startswith(ROW_KEY_PREFIX):
            return None
    cols = fast_columns(dicts, (row_key, *keys), len(first))
    if cols is None:
        return None
    n = len(dicts)
    arrays = [pa.Array.from_buffers(_BUFFER_TYPES[code], n, [None, pa.py_buffer(raw)]) for code, raw in cols]
    if state is not None:
        state.last_ts = dicts[-1][row_key]
    return Encoded(pa.Table.from_arrays(arrays, names=[TIMESTAMP, *keys]))


def chunks_table(chunks: list, state) -> Encoded:
    """The rows of consecutive chunks (hotpath.Chunk) of one metric with the same fields and types, as one
    table: their call times, then each field as float64 or int64 (what rows_to_table gives the same rows)."""
    parts = [chunk.columns() for chunk in chunks]
    n = sum(map(len, chunks))
    arrays = [pa.Array.from_buffers(_BUFFER_TYPES[parts[0][k][0]], n,
                                    [None, pa.py_buffer(b"".join([part[k][1] for part in parts]))])
              for k in range(len(parts[0]))]
    if state is not None and n:
        state.last_ts = chunks[-1].last_time
    return Encoded(pa.Table.from_arrays(arrays, names=[TIMESTAMP, *chunks[0].names]))


def rows_to_table(times: Sequence[float], dicts: Sequence[dict], state=None, row_key: str | None = None) -> Encoded:
    """Encode rows logged at ``times`` into one table; see module docstring. An explicit ``_ts`` or
    ``timestamp`` field overrides the call time (``_ts=-1``: the last timestamp written, via ``state``).
    ``row_key``: the metric row key every row carries (not a field). A row with a field whose name starts
    with ROW_KEY_PREFIX is refused, with why: it may even be another metric's row, so its time is unknown."""
    n = len(dicts)
    if n == 0:
        return Encoded(pa.table({TIMESTAMP: pa.array([], pa.float64())}))
    if row_key is not None:
        encoded = numeric_table(dicts, state, row_key)
        if encoded is not None:
            return encoded
    by_key = _uniform_columns(dicts, row_key)
    all_keys = list(by_key) if by_key is not None else _keys(dicts)
    reasons: list[str] = []
    bad_rows: set[int] = set()
    reserved = [k for k in all_keys if k != row_key and isinstance(k, str) and k.startswith(ROW_KEY_PREFIX)]
    for key in reserved:
        bad = [i for i, d in enumerate(dicts) if key in d]
        bad_rows.update(bad)
        reasons.append(f"field name {key!r} is reserved (names starting with {ROW_KEY_PREFIX!r} mark the SDK's "
                       f"queued rows); {len(bad)} row(s) with it were refused")
    if bad_rows:
        times = [0.0 if i in bad_rows else t for i, t in enumerate(times)]
    if TS_ALIASES[0] in all_keys or TS_ALIASES[1] in all_keys:
        times, problems = resolve_times(times, dicts, state)
        reasons += problems
    if state is not None:
        state.last_ts = times[-1]
    keys = [k for k in all_keys if k not in TS_ALIASES and k != row_key and k not in reserved]
    names, arrays = [TIMESTAMP], [pa.array(times, pa.float64())]
    for key in keys:
        if not isinstance(key, str):
            reasons.append(f"field name {key!r} is not a string; its values were refused")
            continue
        values = by_key[key] if by_key is not None else list(map(dict.get, dicts, repeat(key)))
        array, bad, reason = _column(key, values)
        if reason:
            reasons.append(reason)
            bad_rows.update(bad)
        if array is not None:
            names.append(key)
            arrays.append(array)
    names, arrays = _flatten_structs(names, arrays)
    table = pa.Table.from_arrays(arrays, names=names)
    if bad_rows:
        keep = pa.array([i not in bad_rows for i in range(n)])
        table = table.filter(keep)
    return Encoded(table, len(bad_rows), reasons)


def resolve_times(call_times: Sequence[float], dicts: Sequence[dict], state=None) -> tuple[list[float], list[str]]:
    """Per-row timestamps: an explicit ``_ts`` or ``timestamp`` (seconds, or a datetime) wins over the
    call time; ``_ts=-1`` takes the last timestamp written before it. Returns the times and reasons for
    explicit values that were not usable (the call time was used for those)."""
    times = list(call_times)
    problems = []
    last = None if state is None else state.last_ts
    for i, d in enumerate(dicts):
        for alias in TS_ALIASES:
            if alias in d:
                value = d[alias]
                ts = _as_seconds(value)
                if ts == -1 and alias == "_ts":
                    ts = last if last is not None else times[i]
                if ts is None or math.isnan(ts):
                    problems.append(f"{alias}={value!r} is not a number of seconds or a datetime; the call time "
                                    f"was used")
                else:
                    times[i] = ts
                break
        last = times[i]
    return times, problems


def _as_seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    stamp = getattr(value, "timestamp", None)
    if callable(stamp):
        try:
            return float(stamp())
        except Exception:  # noqa: BLE001
            return None
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return float(item())
        except Exception:  # noqa: BLE001
            return None
    return None


def unify(old: pa.Schema | None, table: pa.Table) -> tuple[pa.Schema, pa.Table, int, list[str]]:
    """Fit ``table`` to a stream whose journal has schema ``old``.

    Returns the (possibly grown) schema, the table cast to it, and rows refused with reasons: new fields
    are added, int64 and float64 promote to float64 (lists likewise), bools logged into a numeric field
    too (as 1.0 / 0.0, what one batch mixing them gives), a null column takes the stored type, and values
    of a clashing type (a bool field getting numbers included) are refused with their rows.
    """
    if old is None:
        return table.schema, table, 0, []
    if table.schema.equals(old):  # the usual append: the same fields with the same types
        return old, table, 0, []
    fields = list(old)
    index = {f.name: i for i, f in enumerate(fields)}
    clashing: list[str] = []
    refused_mask = None
    reasons = []
    for f in table.schema:
        if f.name not in index:
            index[f.name] = len(fields)
            fields.append(f)
            continue
        stored = fields[index[f.name]].type
        if stored == f.type or pa.types.is_null(f.type):
            continue
        promoted = _promote(stored, f.type)
        if promoted is not None:
            fields[index[f.name]] = pa.field(f.name, promoted)
            continue
        if pa.types.is_null(stored):
            fields[index[f.name]] = f
            continue
        clashing.append(f.name)
        clash = pc.is_valid(table.column(f.name))
        refused_mask = clash if refused_mask is None else pc.or_(refused_mask, clash)
        reasons.append(f"field {f.name!r} is stored as {stored} but {f.type} values were logged; those rows "
                       f"were refused (log one type per field, or use another field name)")
    refused = 0
    if refused_mask is not None:
        before = table.num_rows
        table = table.filter(pc.invert(refused_mask)).drop_columns(clashing)
        refused = before - table.num_rows
    schema = pa.schema(fields)
    return schema, conform(table, schema), refused, reasons


def _promote(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    stored_numeric = pa.types.is_integer(a) or pa.types.is_floating(a)
    if stored_numeric and (pa.types.is_integer(b) or pa.types.is_floating(b)):
        return pa.float64() if a != b else a
    if stored_numeric and pa.types.is_boolean(b):  # as within one batch (_column): among numbers, True is 1.0
        return pa.float64()
    if pa.types.is_list(a) and pa.types.is_list(b):
        inner = _promote(a.value_type, b.value_type)
        if inner is not None:
            return pa.list_(inner)
        if pa.types.is_null(a.value_type):
            return b
        if pa.types.is_null(b.value_type):
            return a
    return None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing ones null), cast to its types."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """Tables of one stream (schemas that grew over time) as one table."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({TIMESTAMP: pa.array([], pa.float64())})
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def merge_same_timestamps(table: pa.Table, writers: Sequence[str | None] | None = None) -> pa.Table:
    """Rows sorted by time; rows sharing a timestamp merge into one entry (fields one of them lacks are
    filled from the other). ``writers`` names each row's writer (None: unknown). A writer's later value
    for a field it set itself replaces it (a correction); a value that differs from another (or an
    unknown) writer's is kept as its own entry, so two writers never overwrite each other silently."""
    if table.num_rows < 2:
        return table
    ts = table.column(TIMESTAMP)
    if pc.count_distinct(ts).as_py() == table.num_rows:
        if pc.all(pc.greater_equal(ts.combine_chunks()[1:], ts.combine_chunks()[:-1])).as_py() is not False:
            return table
        return table.sort_by(TIMESTAMP)
    rows = table.to_pylist()
    merged: dict[float, list[_Entry]] = {}
    for row, writer in zip(rows, writers if writers is not None else repeat(None)):
        entries = merged.setdefault(row[TIMESTAMP], [])
        own = next((e for e in reversed(entries) if writer is not None and writer in e.owner.values()), None)
        target = next((e for e in (own, entries[-1] if entries else None) if e is not None and e.takes(row, writer)),
                      None)
        if target is None:
            entries.append(target := _Entry({TIMESTAMP: row[TIMESTAMP]}, {}))
        target.update(row, writer)
    ordered = [e.values for t in sorted(merged, key=lambda x: (math.isnan(x), x)) for e in merged[t]]
    return pa.Table.from_pylist(ordered, schema=table.schema)


@dataclass
class _Entry:
    """One merged entry and, per field, the writer that set it."""

    values: dict
    owner: dict

    def takes(self, row: dict, writer: str | None) -> bool:
        """Whether ``row`` merges in: every field it sets is unset here, equal, or set by the same writer."""
        return not any(v is not None and self.values.get(k) is not None and not _same(self.values[k], v)
                       and (writer is None or self.owner.get(k) != writer)
                       for k, v in row.items() if k != TIMESTAMP)

    def update(self, row: dict, writer: str | None) -> None:
        for k, v in row.items():
            if v is not None and k != TIMESTAMP:
                self.values[k] = v
                self.owner[k] = writer


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def table_to_rows(table: pa.Table) -> list[dict]:
    """Rows as dicts, dropping fields that are null in that row."""
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes for ``table`` (the wire form of row streams)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    """A table from Arrow IPC stream bytes; raises ValueError when they are not a valid stream."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"not a valid Arrow IPC stream: {exc}") from None
