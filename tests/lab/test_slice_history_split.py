"""An exported slice's loss_history column holds the losses of the slice's own split: a val slice carries
each sample's per-evaluation val losses, not the train losses of the train sample with the same index."""

from __future__ import annotations

import json

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc
from support import wait_until


def test_a_val_slice_exports_its_val_loss_history(live_run, tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    trainer = Trainer("t", "slices", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(100, seed=1), batch_size=20, shuffle=True),
                   val_loader=DataLoader(boring_dataset(40, seed=2), batch_size=20))  # its own dataset
    run.client.control.Step(control_pb2.StepRequest(steps=10))  # two epochs: a validation recorded
    wait_until(lambda: trainer.run.step == 10 and trainer.run.control.state.name == "PAUSED", what="10 steps")
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    rows = json.dumps([{"index": i, "split": "val"} for i in (0, 1, 2)]).encode()
    lab.ImportSlice(lab_pb2.ImportSliceRequest(name="v", format=lab_pb2.SLICE_FORMAT_JSON, data=rows))
    exported = b"".join(c.data for c in lab.ExportSlice(lab_pb2.ExportSliceRequest(
        name="v", format=lab_pb2.SLICE_FORMAT_JSON, columns=["loss_history"])))
    for row in json.loads(exported):
        val = lab.SampleTrajectory(lab_pb2.SampleTrajectoryRequest(index=row["index"],
                                                                   splits=[lab_pb2.SAMPLE_SPLIT_VAL]))
        losses = list(val.series[0].losses)
        assert losses  # at least one validation recorded it
        assert row["loss_history"] == losses
