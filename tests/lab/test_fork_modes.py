"""A specialist trains the way the run trains: a submodule the user keeps in eval (a frozen BatchNorm)
stays in eval in the copy, so its statistics are the generalist's, as continuing the run would keep them."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset
from onthefly.lab.lab import lab_of
from onthefly.lab.workbench import workbench_of
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def test_a_specialist_keeps_a_frozen_batchnorm_frozen(live_run, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    model[1].eval()  # frozen statistics, the rest trains
    trainer = Trainer("t", "modes", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(200, seed=2), batch_size=20, shuffle=True))
    run.client.control.Step(control_pb2.StepRequest(steps=5))
    wait_until(lambda: trainer.run.step == 5 and trainer.run.control.state.name == "PAUSED", what="5 steps")
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    assert lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=3, ratio=1.0, seed=0)).discovery.regions
    forked = pb_grpc.ResolutionServiceStub(run.client.channel).Fork(pb.ForkRequest(region_ids=["r1"], budget=60))
    assert forked.receipt.status == APPLIED
    specialist = workbench_of(lab_of(trainer.run)).specialist(forked.specialist_ids[0]).model
    assert [m.training for m in specialist.modules()] == [m.training for m in model.modules()]
    assert torch.equal(specialist[1].running_mean, model[1].running_mean)
    assert torch.equal(specialist[1].running_var, model[1].running_var)
    assert not torch.equal(specialist[0].weight, model[0].weight)  # it did train
