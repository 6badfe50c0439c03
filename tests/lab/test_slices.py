"""Slices out as Parquet/CSV/JSON bytes and back in: the base indices round-trip, columns are the chosen ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import random_split

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import score
from onthefly.lab.slices import FORMATS, decode, encode, read_indices, region_names, slice_table
from onthefly.runtime.errors import InvalidArgument, NotFound


@pytest.fixture(scope="module")
def scored():
    base = boring_dataset(200, seed=0)
    part, _ = random_split(base, [0.5, 0.5], generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    table = score(BoringModel(), part)
    return table, discover_regions(table, None, k=4, ratio=1.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_round_trips_the_base_indices(scored, fmt):
    table, regions = scored
    members = table.index[::3]  # base indices through random_split: not 0..n-1
    history = [[0.5, 0.25 * i] for i in range(len(members))]
    out = slice_table(members, "train", table=table, regions=regions, loss_history=history,
                      columns=("label", "loss", "region", "loss_history"))
    assert out.column_names == ["index", "split", "label", "loss", "region", "loss_history"]
    data = encode(out, fmt)
    back = decode(data, fmt)
    assert back.column("index").to_pylist() == members.tolist()
    split, indices = read_indices(data, fmt)
    assert split == "train" and np.array_equal(indices, members)
    rows = table.positions(members)
    assert np.allclose(np.asarray(back.column("loss").to_pylist(), np.float64), table.loss[rows], atol=1e-6)
    regions_out = back.column("region").to_pylist()
    assert set(regions_out) <= {r.id for r in regions.regions} | {"rest"}
    assert regions_out == region_names(regions, "train", members)
    stored = back.column("loss_history").to_pylist()
    if fmt == "csv":  # CSV has no list type: JSON text
        stored = [json.loads(v) for v in stored]
    assert stored[3] == pytest.approx(history[3])


def test_bad_slices_are_refused_clearly(scored):
    table, _ = scored
    with pytest.raises(InvalidArgument, match="unknown column 'pixels'"):
        slice_table(table.index[:2], "train", table=table, columns=("pixels",))
    with pytest.raises(NotFound, match="base index 100000"):
        slice_table([100_000], "train", table=table, columns=("loss",))
    with pytest.raises(InvalidArgument, match="need a val scoring pass"):
        slice_table([1], "val", columns=("loss",))
    with pytest.raises(InvalidArgument, match="unknown slice format"):
        encode(slice_table([1], "train", columns=("region",)), "xlsx")
    with pytest.raises(InvalidArgument, match="cannot be read"):
        decode(b"not parquet", "parquet")
    with pytest.raises(InvalidArgument, match="no 'index' column"):
        read_indices(b'[{"idx": 1}]', "json")
    with pytest.raises(InvalidArgument, match="mixes splits"):
        read_indices(b'[{"index": 1, "split": "train"}, {"index": 2, "split": "test"}]', "json")
    with pytest.raises(InvalidArgument, match=">= 0"):
        read_indices(b"index\n-3\n", "csv")
