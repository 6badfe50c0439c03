"""The lab's compute allowance: a Lab() / Trainer() option and a per-request setting (CLI --allowance); past it a
fork or comparison is refused with an error that says how to give more, and the generalist is untouched."""

from __future__ import annotations

import math

import grpc
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.demos.boring import boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.lab import Lab, lab_of
from onthefly.lab.scoring import state_dict_hash
from onthefly.lab.workbench import workbench_of
from onthefly.runtime.errors import InvalidArgument
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED
STEPS, BATCH = 1000, 20  # planned: 20,000 sample-gradients


def test_bad_allowances_are_refused_with_the_fix():
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(InvalidArgument, match="allowance is a positive multiple"):
            Lab(allowance=bad)
    for bad in (0, 2.5, True):
        with pytest.raises(InvalidArgument, match="allowance_samples"):
            Lab(allowance_samples=bad)
    with pytest.raises(ValueError, match="once"):
        Trainer(max_steps=10, serve=False, hooks=[Lab()], lab_allowance=2.0)
    with pytest.raises(InvalidArgument):
        Trainer(max_steps=10, serve=False, lab_allowance=0)
    assert Lab(allowance=math.inf).allowance == math.inf


def test_a_limit_can_be_raised_or_lowered_but_never_below_what_was_spent():
    ledger = Ledger(100, "lab")
    ledger.charge(80)
    ledger.set_limit(200)
    assert ledger.remaining == 120
    with pytest.raises(InvalidArgument, match="already spent 80"):
        ledger.set_limit(50)
    ledger.set_limit(None)
    assert ledger.remaining is None and ledger.spent == 80


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_the_trainer_option_limits_the_lab_and_a_request_can_raise_it(live_run, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    base = boring_dataset(300, seed=2)
    train, val = random_split(base, [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    # 0.003 x 20,000 planned sample-gradients: the lab may train 60.
    trainer = Trainer("t", "allowance", max_steps=STEPS, seed=0, port=0, start_paused=True, verbose=False,
                      lab_allowance=0.003)
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=BATCH, shuffle=True), val_loader=DataLoader(val, batch_size=64))
    run.client.control.Step(control_pb2.StepRequest(steps=20))
    wait_until(lambda: trainer.run.step == 20 and trainer.run.control.state.name == "PAUSED", what="the steps")
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    assert lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=4, ratio=1.0, seed=0)).discovery.regions
    res = pb_grpc.ResolutionServiceStub(run.client.channel)
    generalist = state_dict_hash(model)
    assert workbench_of(lab_of(trainer.run)).ledger.limit == 60

    code, details = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=64)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "60" in details and "Trainer(lab_allowance=" in details and "--allowance" in details
    code, details = _code(lambda: res.Compare(pb.CompareRequest(extra=40, resolutions=["continue", "upweight-hard"])))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--extra" in details and "allowance" in details
    assert state_dict_hash(model) == generalist

    # The CLI raises it for this run, then forks within it.
    code = main(["--address", trainer.address, "--token", trainer.token, "lab", "fork", "r1", "--budget", "64",
                 "--allowance", "100"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("forked"), err
    assert workbench_of(lab_of(trainer.run)).ledger.limit == 100
    assert workbench_of(lab_of(trainer.run)).ledger.spent == 64
    assert state_dict_hash(model) == generalist
    # Lowering it under what was spent is refused, and says so.
    code, details = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=8, allowance=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "already spent 64" in details
    # A bad flag is refused by the CLI before anything is sent.
    with pytest.raises(SystemExit):
        main(["--address", trainer.address, "--token", trainer.token, "lab", "fork", "r1", "--budget", "8",
              "--allowance", "0"])
    assert "positive" in capsys.readouterr().err
