"""A discovery that outlasts its caller's timeout says so in words (and finishes anyway, listed once done)
instead of surfacing a bare TimeoutError."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import lab_of
from onthefly.runtime.errors import FailedPrecondition
from onthefly.server.status import status_of
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc
from support import wait_until


def test_a_discovery_past_its_timeout_is_a_clear_error(live_run, tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    trainer = Trainer("t", "timeout", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(200), batch_size=20, shuffle=True))
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    wait_until(lambda: trainer.run.step == 3 and trainer.run.control.state.name == "PAUSED", what="3 steps")
    assert lab_pb2_grpc.LabServiceStub(run.client.channel).Score(lab_pb2.ScoreRequest()).receipt.status == 2
    lab = lab_of(trainer.run)
    with pytest.raises(FailedPrecondition, match="still running") as raised:
        lab.discover(k=3, ratio=1.0, timeout=0)
    code, message = status_of(raised.value)
    assert code.name == "FAILED_PRECONDITION" and "--latest" in message
    assert wait_until(lambda: _listed(lab), what="the discovery to finish").k == 3


def _listed(lab):
    try:
        return lab.regions()
    except FailedPrecondition:
        return None
