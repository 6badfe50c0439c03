"""The Lab from Python, after fit (no server): scoring, discovery with verdicts, selections and slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import Lab
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from onthefly.sessions import Sessions


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    torch.manual_seed(0)
    train, val = random_split(boring_dataset(300, seed=5), [0.8, 0.2], generator=torch.Generator().manual_seed(5))
    lab = Lab(part_rows=400)
    model = BoringModel()
    Trainer("t", "py", max_epochs=4, seed=0, serve=False, verbose=False,
            hooks=[Sessions(store=tmp_path_factory.mktemp("s")), lab]).fit(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
        DataLoader(train, batch_size=20, shuffle=True), val_loader=DataLoader(val, batch_size=50))
    lab.train, lab.val = train, val
    return lab


def test_score_discover_and_describe_after_fit(lab):
    with pytest.raises(FailedPrecondition, match="no train scoring pass yet"):
        lab.discover()
    result = lab.score(("train", "val"))
    assert sorted(result.tables) == ["train", "val"] and result.step == 48
    assert sorted(lab.table("val").index.tolist()) == sorted(lab.val.indices)
    regions = lab.discover(k=5, ratio=1.0, seed=1)
    assert regions.regions and regions.state_hash == lab.table().state_hash
    d = lab.describe("r1")
    assert d.size == regions.region("r1").size and d.verdict == lab.verdicts()["r1"].verdict
    assert d.trend in ("getting better", "getting worse", "flat") and np.isfinite(d.trend_slope)
    assert set(d.examples) <= set(regions.region("r1").indices.tolist())
    with pytest.raises(NotFound, match="r1"):
        lab.describe("r9")
    with pytest.raises(InvalidArgument, match="k=100000"):
        lab.discover(k=100_000)


def test_selections_and_slices(lab):
    lab.score()
    table = lab.table()
    wrong = lab.select_class_errors("wrong0", "train", 0)
    assert set(wrong.indices.tolist()) == set(table.index[(table.label == 0) & ~table.correct].tolist())
    with pytest.raises(InvalidArgument, match="labels are 0, 1, 2"):
        lab.select_class_errors("x", "train", 7)
    forgot = lab.select_forgotten("forgot")
    assert forgot.split == "train" and set(forgot.indices.tolist()) <= set(lab.train.indices)
    band = lab.select_loss_band("top", "train", 0.9, 1.0)
    assert len(band.indices) == pytest.approx(0.1 * len(table), abs=2)
    rows, data = lab.export_slice("top", "json", ("loss", "loss_history"))
    parsed = json.loads(data)
    assert rows == len(parsed) == len(band.indices) and all(len(r["loss_history"]) == 4 for r in parsed)
    back = lab.import_slice("top-again", "json", data)
    assert np.array_equal(back.indices, band.indices)
    with pytest.raises(InvalidArgument, match="unknown column"):
        lab.export_slice("top", "csv", ("lossy",))
