"""An applied resolution hands the live run copies: training on after an apply leaves the resolution as the
comparison built it, so applying it again installs the same weights and optimizer state."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset
from onthefly.sessions import Sessions
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from lab.helpers import APPLIED, score_and_discover, step_to


def _equal_states(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(torch.equal(a["state"][p][k], b["state"][p][k]) for p in a["state"] for k in a["state"][p])


def test_applying_twice_installs_the_same_optimizer_state(live_run, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train, val = random_split(boring_dataset(300, seed=2), [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    trainer = Trainer("t", "apply", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, optimizer, nn.CrossEntropyLoss(), DataLoader(train, batch_size=20, shuffle=True),
                   val_loader=DataLoader(val, batch_size=64))
    step_to(run, 10)
    score_and_discover(run)
    res = pb_grpc.ResolutionServiceStub(run.client.channel)
    assert res.Compare(pb.CompareRequest(extra=60, resolutions=["continue"])).receipt.status == APPLIED

    first = res.Apply(pb.ApplyRequest(resolution="continue", confirm=True))
    assert first.receipt.status == APPLIED
    installed = copy.deepcopy(optimizer.state_dict())
    step_to(run, 20)  # the live run trains on: its optimizer state moves
    second = res.Apply(pb.ApplyRequest(resolution="continue", confirm=True))
    assert second.receipt.status == APPLIED and second.state_hash == first.state_hash
    assert _equal_states(optimizer.state_dict(), installed)


def test_a_comparison_gives_back_each_modules_train_flag(live_run, tmp_path):
    """A user who freezes a BatchNorm layer (eval inside a training model) finds it frozen after a comparison:
    the comparison's cost measurement and Fisher merge must not flatten the live model's modes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    model[1].eval()  # frozen statistics, the rest trains
    train, val = random_split(boring_dataset(300, seed=2), [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    trainer = Trainer("t", "modes", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=20, shuffle=True), val_loader=DataLoader(val, batch_size=64))
    step_to(run, 5)
    score_and_discover(run)
    res = pb_grpc.ResolutionServiceStub(run.client.channel)
    modes = [m.training for m in model.modules()]
    assert res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40)).receipt.status == APPLIED
    compared = res.Compare(pb.CompareRequest(extra=400, resolutions=["continue", "merge-fisher"]))
    assert compared.receipt.status == APPLIED, compared.receipt.reason
    assert [m.training for m in model.modules()] == modes
