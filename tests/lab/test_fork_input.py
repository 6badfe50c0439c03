"""A fork's bad input is refused before anything is queued, with INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import grpc
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def test_a_negative_patience_is_refused_before_anything_is_queued(live_run, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    trainer = Trainer("t", "patience", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(200, seed=2), batch_size=20, shuffle=True))
    run.client.control.Step(control_pb2.StepRequest(steps=5))
    wait_until(lambda: trainer.run.step == 5 and trainer.run.control.state.name == "PAUSED", what="5 steps")
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    assert lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=3, ratio=1.0, seed=0)).discovery.regions
    res = pb_grpc.ResolutionServiceStub(run.client.channel)
    with pytest.raises(grpc.RpcError) as refused:
        res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40, patience=-1))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "patience" in refused.value.details()
