"""A comparison acts on the noise verdicts the discovery showed: it reads them instead of running its own
label-noise check again (on other features when the discovery left the inputs out, or on a newer scoring
pass), so what the regions table says and what the menu blocks cannot disagree."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset
from onthefly.lab import noise
from onthefly.sessions import Sessions
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from lab.helpers import APPLIED, score_and_discover, step_to


def test_the_menu_blocks_what_the_regions_table_flagged(live_run, monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    train, val = random_split(boring_dataset(300, seed=2), [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    trainer = Trainer("t", "verdicts", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=20, shuffle=True), val_loader=DataLoader(val, batch_size=64))
    step_to(run, 10)
    shown = score_and_discover(run)
    assert all(r.verdict == noise.REGIME for r in shown)

    # Any other check would now say noise (as a check on other features may): the menu must not hear it.
    def everything_noisy(table, regions, x=None, **kwargs):
        return [noise.RegionVerdict(r.id, True, noise.NOISE, 1.0, 0.0, r.size, r.size, (), "noise", "test")
                for r in regions.regions]

    monkeypatch.setattr(noise, "region_verdicts", everything_noisy)
    compared = pb_grpc.ResolutionServiceStub(run.client.channel).Compare(
        pb.CompareRequest(extra=40, resolutions=["continue", "upweight-region"]))
    assert compared.receipt.status == APPLIED, compared.receipt.reason
    assert "upweight-region" not in compared.comparison.skipped
    assert [r.name for r in compared.comparison.validation.rows] == ["continue", "upweight-region"]
