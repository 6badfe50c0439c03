"""Telemetry under Lightning: step metrics, per-sample losses with dataset indices, validation results,
lifecycle; per-sample values through the module's own loss or returned by training_step."""

from __future__ import annotations

import math

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from onthefly.client import sample_arrays
from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring, LitCustomLoss
from onthefly.v1 import control_pb2, receipt_pb2, telemetry_pb2

T = telemetry_pb2


def _of(events, payload: str) -> list:
    return [e for e in events if e.WhichOneof("payload") == payload]


def _collect(run) -> list:
    """Resume the paused run and read every event until it finishes."""
    stream = run.client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
    run.client.control.Resume(control_pb2.ResumeRequest())
    events = []
    for frame in stream:
        events.extend(frame.events)
        if any(e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED for e in _of(frame.events, "lifecycle")):
            break
    stream.cancel()
    run.join()
    return events


def test_steps_samples_validation_and_lifecycle(lit_run):
    L.seed_everything(0)
    model = LitBoring()
    data = boring_dataset(128)
    train = DataLoader(Subset(data, list(range(64, 128))), batch_size=16, shuffle=False)  # indices map to the base
    val = DataLoader(data, batch_size=16)
    events = _collect(lit_run(model, train, val, trainer_kwargs={"max_epochs": 1, "limit_val_batches": 2}))

    steps = _of(events, "step_metrics")
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert all(e.step_metrics.lr == 0.05 and e.step_metrics.grad_norm > 0 and e.step_metrics.batch_size == 16
               for e in steps)
    samples = _of(events, "sample_losses")
    train_samples = [e for e in samples if e.sample_losses.split == "train"]
    assert len(train_samples) == 4
    for i, (event, metrics) in enumerate(zip(train_samples, steps)):
        indices, losses = sample_arrays(event.sample_losses)
        assert indices.tolist() == list(range(64 + 16 * i, 80 + 16 * i))  # through the Subset to the base dataset
        assert math.isclose(float(np.mean(losses)), metrics.step_metrics.loss, rel_tol=1e-5)

    val_samples = [sample_arrays(e.sample_losses) for e in samples if e.sample_losses.split == "val"]
    assert [idx.tolist() for idx, _ in val_samples] == [list(range(0, 16)), list(range(16, 32))]
    result = _of(events, "eval_result")[0].eval_result
    assert result.split == "val" and result.samples == 32
    mean = float(np.mean(np.concatenate([v for _, v in val_samples])))
    assert math.isclose(result.loss, mean, rel_tol=1e-5)
    assert math.isclose(result.metrics["val_loss"], result.loss, rel_tol=1e-5)  # Lightning's own logged value
    assert 0 <= result.metrics["accuracy"] <= 1

    kinds = [e.lifecycle.kind for e in _of(events, "lifecycle")]
    assert kinds[0] == T.LIFECYCLE_KIND_STARTED and kinds[-1] == T.LIFECYCLE_KIND_FINISHED
    for kind in (T.LIFECYCLE_KIND_EPOCH_STARTED, T.LIFECYCLE_KIND_TEST_STARTED, T.LIFECYCLE_KIND_TEST_FINISHED):
        assert kind in kinds


def test_per_sample_losses_returned_by_training_step(lit_run):
    L.seed_everything(0)
    model = LitCustomLoss()
    data = boring_dataset(64)
    run = lit_run(model, DataLoader(data, batch_size=16), trainer_kwargs={"max_steps": 3}, test_loader=data)
    # No loss module to call outside training_step: test-now is refused with the way out.
    rejected = run.client.control.RunTest(control_pb2.RunTestRequest()).receipt
    assert rejected.status == receipt_pb2.RECEIPT_STATUS_REJECTED and "loss_fn=" in rejected.reason
    events = _collect(run)
    steps = {e.step: e.step_metrics.loss for e in _of(events, "step_metrics")}
    train = [e for e in _of(events, "sample_losses") if e.sample_losses.split == "train"]
    assert len(train) == 3
    for i, event in enumerate(train):
        indices, losses = sample_arrays(event.sample_losses)
        assert indices.tolist() == list(range(16 * i, 16 * i + 16))
        assert math.isclose(float(np.mean(losses)), steps[i + 1], rel_tol=1e-5)


class GoesNaN(LitBoring):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * math.nan if self.trainer.global_step == 3 else loss


def test_guard_skips_snapshots_and_pauses_under_lightning(lit_run):
    L.seed_everything(0)
    model = GoesNaN()
    run = lit_run(model, DataLoader(boring_dataset(128), batch_size=16, shuffle=True),
                  trainer_kwargs={"max_epochs": 10}, guard=True, start_paused=False)
    guard = next(h for h in run.callback._extra_hooks if type(h).__name__ == "NumericsGuard")
    stream = run.client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0, kinds=[T.EVENT_KIND_LIFECYCLE]))
    paused = None
    for frame in stream:
        paused = next((e for e in _of(frame.events, "lifecycle") if e.lifecycle.kind == T.LIFECYCLE_KIND_PAUSED), None)
        if paused is not None:
            break
    stream.cancel()
    assert "guard: non-finite loss (nan) at step 4" in paused.lifecycle.message and paused.step == 3
    status = run.client.control.GetStatus(control_pb2.GetStatusRequest()).status
    assert status.step == 4 and guard.last_trip.step == 4
    for name, value in model.state_dict().items():  # the NaN step never reached the weights
        assert torch.equal(value, guard.snapshot["model"][name]) and torch.isfinite(value).all()
    run.client.control.Stop(control_pb2.StopRequest())
    run.join()
    assert all(torch.isfinite(p).all() for p in model.parameters())
