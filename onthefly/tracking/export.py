"""Export one stream (a metric, a track or the log) to Parquet, CSV or JSON through pyarrow.

JSON is standard: a list of row objects, non-finite numbers written as {"$float": "NaN"} (see jsonsafe).
CSV holds list values as JSON text. An existing output file is never replaced unless ``force``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from onthefly.tracking import atomic, columns, jsonsafe
from onthefly.tracking.errors import InvalidArgument

FORMATS = ("parquet", "csv", "json", "jsonl")


def format_for(path: str | Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InvalidArgument(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise InvalidArgument(f"cannot tell the format of {str(path)!r}: pass --format ({', '.join(FORMATS)})")


def _csv_ready(table: pa.Table) -> pa.Table:
    out = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_list(col.type) or pa.types.is_struct(col.type) or pa.types.is_large_list(col.type):
            col = pa.array([None if v is None else json.dumps(jsonsafe.plain(v)) for v in col.to_pylist()],
                           pa.string())
        out.append(col)
    return pa.Table.from_arrays(out, names=table.column_names)


def encode(table: pa.Table, fmt: str) -> bytes:
    """The bytes of ``table`` in ``fmt``."""
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(_csv_ready(table), buf)
        return buf.getvalue()
    rows = columns.table_to_rows(table)
    if fmt == "json":
        return (jsonsafe.dumps(rows, "rows", indent=1) + "\n").encode("utf-8")
    if fmt == "jsonl":
        return "".join(jsonsafe.dumps(r, "row") + "\n" for r in rows).encode("utf-8")
    raise InvalidArgument(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def export_table(table: pa.Table, path: str | Path, fmt: str | None = None, force: bool = False) -> Path:
    """Write ``table`` to ``path`` atomically; refuses to replace an existing file unless ``force``."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, encode(table, fmt), durable=True)
    return path
