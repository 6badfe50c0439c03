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
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from lab.helpers import APPLIED, score_and_discover, step_to


def test_a_specialist_keeps_a_frozen_batchnorm_frozen(live_run, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    model[1].eval()  # frozen statistics, the rest trains
    trainer = Trainer("t", "modes", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(200, seed=2), batch_size=20, shuffle=True))
    step_to(run, 5)
    score_and_discover(run)
    forked = pb_grpc.ResolutionServiceStub(run.client.channel).Fork(pb.ForkRequest(region_ids=["r1"], budget=60))
    assert forked.receipt.status == APPLIED
    specialist = workbench_of(lab_of(trainer.run)).specialist(forked.specialist_ids[0]).model
    assert [m.training for m in specialist.modules()] == [m.training for m in model.modules()]
    assert torch.equal(specialist[1].running_mean, model[1].running_mean)
    assert torch.equal(specialist[1].running_var, model[1].running_var)
    assert not torch.equal(specialist[0].weight, model[0].weight)  # it did train
