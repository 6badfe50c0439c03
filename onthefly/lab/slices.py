"""Slices out and back in: a set of base indices of one split as Parquet, CSV or JSON *bytes* (pyarrow).

    data = encode(slice_table(indices, "train", table=scores, regions=found, columns=("label", "loss")), "csv")
    split, indices = read_indices(data, "csv")

Nothing here touches the file system: the server streams these bytes and the CLI writes the file the
user named. Every exported row carries its base index and split; the other columns are the user's
choice (``COLUMNS``). CSV has no list type, so a loss history is written there as JSON text
(``[0.7, 0.5]``); JSON is an array of objects, one per sample.
"""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

import numpy as np

from onthefly.lab.regions import RegionSet
from onthefly.lab.scoring import ScoreTable
from onthefly.runtime.errors import InvalidArgument

FORMATS = ("parquet", "csv", "json")
COLUMNS = ("label", "prediction", "correct", "loss", "margin", "region", "loss_history")
DEFAULT_COLUMNS = ("label", "prediction", "loss", "margin", "region")
_TABLE_COLUMNS = {"label": "label", "prediction": "pred", "correct": "correct", "loss": "loss", "margin": "margin"}


def slice_table(indices: Any, split: str, *, table: ScoreTable | None = None, regions: RegionSet | None = None,
                loss_history: Sequence[Sequence[float]] | None = None,
                columns: Sequence[str] | None = None) -> Any:
    """A pyarrow Table of the slice: ``index``, ``split`` and the chosen columns, one row per base index.

    Score columns read ``table`` (the slice's split); ``region`` reads ``regions`` (its id, "rest" for a
    scored sample in no region, "" where the regions were found on another split); ``loss_history`` is
    given row for row (e.g. from ``SampleHistory``).
    """
    import pyarrow as pa

    chosen = tuple(columns) if columns else DEFAULT_COLUMNS
    unknown = [c for c in chosen if c not in COLUMNS]
    if unknown:
        raise InvalidArgument(f"unknown column {unknown[0]!r}; choose from {', '.join(COLUMNS)}")
    index = np.asarray(indices, dtype=np.int64).reshape(-1)
    if np.any(index < 0):
        raise InvalidArgument(f"a slice holds base indices >= 0; got {int(index[index < 0][0])}")
    data: dict[str, Any] = {"index": pa.array(index, pa.int64()), "split": pa.array([split] * len(index), pa.string())}
    score_columns = [c for c in chosen if c in _TABLE_COLUMNS]
    if score_columns:
        if table is None:
            raise InvalidArgument(f"columns {', '.join(score_columns)} need a {split} scoring pass; score first")
        if table.split != split:
            raise InvalidArgument(f"the score table is of split {table.split!r}, the slice of {split!r}")
        rows = table.positions(index)  # NotFound naming an index the pass did not score
        for column in score_columns:
            data[column] = pa.array(getattr(table, _TABLE_COLUMNS[column])[rows])
    if "region" in chosen:
        data["region"] = pa.array(region_names(regions, split, index), pa.string())
    if "loss_history" in chosen:
        if loss_history is None or len(loss_history) != len(index):
            raise InvalidArgument("the loss_history column needs one loss list per slice member")
        data["loss_history"] = pa.array([[float(v) for v in h] for h in loss_history], pa.list_(pa.float32()))
    return pa.table(data)


def region_names(regions: RegionSet | None, split: str, index: np.ndarray) -> list[str]:
    """Each index's region id, "rest" when scored but in no region, "" when unknown for this split."""
    names = np.array([""] * len(index), dtype=object)
    if regions is None or regions.split != split:
        return names.tolist()
    names[np.isin(index, regions.index)] = "rest"
    for region in regions.regions:
        names[np.isin(index, region.indices)] = region.id
    return names.tolist()


def encode(table: Any, fmt: str) -> bytes:
    """The table as Parquet (zstd), CSV (list columns as JSON text) or JSON (an array of objects) bytes."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        for i, column in enumerate(table.schema):
            if pa.types.is_list(column.type):
                text = [json.dumps(v) for v in table.column(i).to_pylist()]
                table = table.set_column(i, column.name, pa.array(text, pa.string()))
        out = io.BytesIO()
        pacsv.write_csv(table, out)
        return out.getvalue()
    if fmt == "json":
        return json.dumps(table.to_pylist(), allow_nan=True).encode()
    raise InvalidArgument(f"unknown slice format {fmt!r}; choose from {', '.join(FORMATS)}")


def decode(data: bytes, fmt: str) -> Any:
    """The pyarrow Table held in Parquet, CSV or JSON bytes; ``InvalidArgument`` when they cannot be read."""
    import pyarrow as pa

    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown slice format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not data:
        raise InvalidArgument("the slice is empty (0 bytes)")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(data))
        if fmt == "csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(pa.BufferReader(data))
        rows = json.loads(data)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InvalidArgument("a JSON slice is an array of objects, one per sample")
        return pa.Table.from_pylist(rows)
    except InvalidArgument:
        raise
    except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the {fmt} slice cannot be read: {exc}") from None


def read_indices(data: bytes, fmt: str, split: str | None = None) -> tuple[str, np.ndarray]:
    """(split, base indices) of an encoded slice: its ``index`` column, and its ``split`` column unless given."""
    import pyarrow as pa

    table = decode(data, fmt)
    if "index" not in table.column_names:
        raise InvalidArgument(f"the {fmt} slice has no 'index' column (columns: {', '.join(table.column_names)})")
    if split is None:
        splits = set(table.column("split").to_pylist()) if "split" in table.column_names else {"train"}
        if len(splits) > 1:
            raise InvalidArgument(f"the slice mixes splits {sorted(map(str, splits))}; import one split at a time")
        split = str(next(iter(splits))) if splits else "train"
    column = table.column("index")
    if not pa.types.is_integer(column.type) and table.num_rows:
        raise InvalidArgument(f"the slice's 'index' column holds {column.type}, not integers")
    indices = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    if np.any(indices < 0):
        raise InvalidArgument(f"a slice holds base indices >= 0; got {int(indices[indices < 0][0])}")
    return split, indices
