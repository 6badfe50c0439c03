"""attach_lightning(track=...): a Lightning run records into the tracking SDK like the native Trainer."""

from __future__ import annotations

import math

import lightning.pytorch as L
from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring
from onthefly.tracking import Status
from onthefly.tracking.store import LocalStore
from onthefly.v1 import control_pb2


def test_a_lightning_run_records_params_step_metrics_validation_and_status(lit_run, tmp_path):
    L.seed_everything(0)
    data = boring_dataset(64)
    dash = tmp_path / "dash"
    run = lit_run(LitBoring(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32),
                  trainer_kwargs={"max_epochs": 2}, track={"dash_root": dash, "durable": False})
    run.client.control.Resume(control_pb2.ResumeRequest())
    run.join()
    exp = run.callback.experiment
    identity = run.callback.run.identity
    record = LocalStore(dash).get_experiment(exp.prefix)
    assert record.status is Status.COMPLETED and record.metadata["onthefly_run_id"] == identity.run_id
    train = exp.metrics("train").read_table().to_pylist()
    assert [row["step"] for row in train] == list(range(1, 9))
    assert all(math.isfinite(row["loss"]) and row["lr"] == 0.05 for row in train)
    assert len(exp.metrics("val").read_table().to_pylist()) == 2
    assert exp.params.get()["model.class"] == "LitBoring"
