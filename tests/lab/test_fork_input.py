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
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from lab.helpers import score_and_discover, step_to


def test_a_negative_patience_is_refused_before_anything_is_queued(live_run, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    trainer = Trainer("t", "patience", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(200, seed=2), batch_size=20, shuffle=True))
    step_to(run, 5)
    score_and_discover(run)
    res = pb_grpc.ResolutionServiceStub(run.client.channel)
    with pytest.raises(grpc.RpcError) as refused:
        res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40, patience=-1))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "patience" in refused.value.details()
