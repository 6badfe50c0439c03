"""Per-sample losses on the stream carry the right base-dataset index and value for any loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

from onthefly import StepOutput, Trainer
from onthefly.v1 import telemetry_pb2


def _collect(run, split="train"):
    out = {}
    for frame in run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
            kinds=[telemetry_pb2.EVENT_KIND_SAMPLE_LOSSES])):
        for e in frame.events:
            if e.sample_losses.split == split:
                for i, v in zip(e.sample_losses.indices, e.sample_losses.losses):
                    out.setdefault(int(i), []).append(v)
    return out


def _frozen(model):
    return torch.optim.SGD(model.parameters(), lr=0.0)  # weights never change: references stay valid


def _regression_data(n=96, out=3):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=g), torch.randn(n, out, generator=g))


LOSSES = [
    ("mse", nn.MSELoss(), nn.MSELoss(reduction="none")),
    ("l1", nn.L1Loss(), nn.L1Loss(reduction="none")),
    ("huber", nn.HuberLoss(), nn.HuberLoss(reduction="none")),
    ("plain_fn", lambda p, t: ((p - t) ** 4).mean(), lambda p, t: (p - t) ** 4),
]


@pytest.mark.parametrize("name,loss_fn,reference", LOSSES, ids=[c[0] for c in LOSSES])
def test_regression_losses_with_random_split_indices(live_run, name, loss_fn, reference):
    torch.manual_seed(0)
    base = _regression_data()
    train, _ = random_split(base, [64, 32])
    model = nn.Linear(8, 3)
    run = live_run(Trainer("t", name, max_epochs=1, port=0, start_paused=True, verbose=False),
                   model, _frozen(model), loss_fn, DataLoader(train, batch_size=10, shuffle=True))
    from onthefly.v1 import control_pb2

    run.client.control.Resume(control_pb2.ResumeRequest())
    got = _collect(run)
    run.join()
    assert sorted(got) == sorted(train.indices)  # every sample once, by base-dataset index
    x, y = base.tensors
    with torch.no_grad():
        expected = reference(model(x), y).reshape(len(x), -1).mean(dim=1)
    for index, values in got.items():
        assert values[0] == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-6)


def test_classification_bce_and_dict_batches(live_run):
    class DictData(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(1)
            self.x = torch.randn(40, 6, generator=g)
            self.y = (self.x[:, :2] > 0).float()

        def __len__(self):
            return 40

        def __getitem__(self, i):
            return {"features": self.x[i], "target": self.y[i]}

    data = DictData()
    model = nn.Linear(6, 2)
    run = live_run(Trainer("t", "bce", max_epochs=1, port=0, start_paused=True, verbose=False),
                   model, _frozen(model), nn.BCEWithLogitsLoss(), DataLoader(data, batch_size=8, shuffle=True))
    from onthefly.v1 import control_pb2

    run.client.control.Resume(control_pb2.ResumeRequest())
    got = _collect(run)
    run.join()
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(data.x), data.y, reduction="none").mean(dim=1)
    assert sorted(got) == list(range(40))
    for index, values in got.items():
        assert values[0] == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-6)


def test_custom_step_fn_with_gradient_accumulation_reports_every_sample(live_run):
    g = torch.Generator().manual_seed(2)
    x, labels = torch.randn(48, 4, generator=g), torch.randint(0, 3, (48,), generator=g)
    data = TensorDataset(x, labels)
    model = nn.Linear(4, 3)

    def step_fn(model, batch, loss_fn):
        features, target = batch
        logits = model(features * 2.0)  # a custom forward the default split could not express
        per_sample = F.cross_entropy(logits, target, reduction="none")
        return StepOutput(loss=per_sample.mean(), per_sample_loss=per_sample)

    trainer = Trainer("t", "custom", max_epochs=1, port=0, start_paused=True, accumulate_grad_batches=2, verbose=False)
    run = live_run(trainer, model, _frozen(model), None, DataLoader(data, batch_size=8), step_fn=step_fn)
    from onthefly.v1 import control_pb2

    run.client.control.Resume(control_pb2.ResumeRequest())
    got = _collect(run)
    result = run.join()
    assert result.steps == 3  # 6 batches, 2 per optimizer step
    with torch.no_grad():
        expected = F.cross_entropy(model(x * 2.0), labels, reduction="none")
    assert sorted(got) == list(range(48))
    assert all(values[0] == pytest.approx(float(expected[i]), rel=1e-5, abs=1e-6) for i, values in got.items())


def test_validation_and_test_results_are_streamed(live_run):
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g))
    model = nn.Linear(4, 2)
    run = live_run(Trainer("t", "evals", max_epochs=2, port=0, start_paused=True, verbose=False),
                   model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                   DataLoader(data, batch_size=8), val_loader=DataLoader(data, batch_size=16),
                   test_loader=DataLoader(data, batch_size=16), do_test_after=True)
    from onthefly.v1 import control_pb2

    run.client.control.Resume(control_pb2.ResumeRequest())
    results = [e.eval_result for frame in run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_EVAL_RESULT])) for e in frame.events]
    fit = run.join()
    assert [(r.split, r.reason) for r in results] == [("val", "schedule"), ("val", "schedule"), ("test", "end")]
    assert all(r.samples == 32 and 0 <= r.metrics["accuracy"] <= 1 for r in results)
    assert fit.test.loss == pytest.approx(results[-1].loss)
    assert np.isfinite(fit.val.loss)
