"""Summary statistics of a stream's columns (count, NaN count, min, max, mean, std, first, last)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from onthefly.tracking.columns import TIMESTAMP


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def column_summary(col: pa.ChunkedArray) -> dict[str, Any]:
    """Statistics of one column; NaN values are counted apart and left out of min/max/mean/std."""
    present = col.drop_null() if col.null_count else col
    out: dict[str, Any] = {"count": len(present)}
    if len(present) == 0:
        return out
    out["first"] = present[0].as_py()
    out["last"] = present[-1].as_py()
    if not _numeric(col.type):
        return out
    values = present.cast(pa.float64()) if not pa.types.is_floating(col.type) else present
    nan = pc.is_nan(values)
    nan_count = pc.sum(nan).as_py() or 0
    out["nan"] = nan_count
    finite_or_inf = values.filter(pc.invert(nan)) if nan_count else values
    if len(finite_or_inf):
        mm = pc.min_max(finite_or_inf)
        out["min"], out["max"] = mm["min"].as_py(), mm["max"].as_py()
        out["mean"] = pc.mean(finite_or_inf).as_py()
        out["std"] = pc.stddev(finite_or_inf, ddof=0).as_py()
    return out


def summarize(table: pa.Table) -> dict[str, dict[str, Any]]:
    """{field: statistics} for every column except the timestamp."""
    return {name: column_summary(table.column(name)) for name in table.column_names if name != TIMESTAMP}
