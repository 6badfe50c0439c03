"""Steering a Lightning fit: pause -> test now -> resume -> N more steps, with the right numbers."""

from __future__ import annotations

import math

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring, quiet_trainer_kwargs
from onthefly.v1 import control_pb2, diagnostics_pb2, diagnostics_pb2_grpc, receipt_pb2, run_pb2, telemetry_pb2
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED
PAUSED = run_pb2.RUN_STATE_PAUSED


def _loaders():
    train = DataLoader(boring_dataset(256), batch_size=16, shuffle=True)
    test = DataLoader(boring_dataset(96, seed=1), batch_size=32)
    return train, test


def _status(run):
    return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status


def _test_loss(model, loader) -> float:
    """Mean test loss computed here, without touching the global RNG (iterating a DataLoader draws a seed)."""
    with torch.random.fork_rng():
        return _mean_loss(model, loader)


def _mean_loss(model, loader) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        total = sum(nn.functional.cross_entropy(model(x), y, reduction="sum").item() for x, y in loader)
    model.train(was)
    return total / len(loader.dataset)


def test_pause_test_resume_then_n_steps_with_correct_numbers(lit_run, tmp_path):
    L.seed_everything(0)
    model = LitBoring()
    train, test = _loaders()
    run = lit_run(model, train, trainer_kwargs={"max_epochs": 100}, test_loader=test, start_paused=False)
    metrics = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        after_seq=0, kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS]))

    pause = run.client.control.Pause(control_pb2.PauseRequest()).receipt
    at = pause.applied_step
    assert pause.status == APPLIED and _status(run).state == PAUSED and _status(run).step == at

    # Test now: the result is the model's test loss at this very step (training is blocked meanwhile).
    expected = _test_loss(model, test)
    tested = run.client.control.RunTest(control_pb2.RunTestRequest())
    assert tested.receipt.status == APPLIED and tested.receipt.applied_step == at
    assert tested.result.samples == 96 and math.isclose(tested.result.loss, expected, rel_tol=1e-6)
    assert _status(run).state == PAUSED and _status(run).step == at  # tested while paused: stays paused

    # Health checks under Lightning see the same model and leave no trace in the numbers either.
    findings = diagnostics_pb2_grpc.DiagnosticsServiceStub(run.client.channel).RunHealthCheck(
        diagnostics_pb2.RunHealthCheckRequest()).findings
    assert findings and all(f.severity == diagnostics_pb2.FINDING_SEVERITY_INFO for f in findings), [
        f for f in findings if f.severity != diagnostics_pb2.FINDING_SEVERITY_INFO]

    assert run.client.control.Resume(control_pb2.ResumeRequest()).receipt.applied_step == at
    wait_until(lambda: _status(run).step >= at + 3, what="training to continue")
    again = run.client.control.Pause(control_pb2.PauseRequest()).receipt.applied_step
    step = run.client.control.Step(control_pb2.StepRequest(steps=5)).receipt
    assert step.status == APPLIED and step.applied_step == again
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == again + 5, what="5 more steps")
    final = again + 5
    assert _status(run).step == final
    assert run.client.control.Stop(control_pb2.StopRequest()).receipt.applied_step == final
    run.join()

    seen = []
    for frame in metrics:
        seen.extend(e.step for e in frame.events)
        if seen and seen[-1] >= final:
            break
    metrics.cancel()
    assert seen == list(range(1, final + 1))  # every step once, none lost to the pauses
    assert run.trainer.global_step == final

    # The same seed without OnTheFly, for exactly as many steps, gives bit-identical weights.
    L.seed_everything(0)
    reference = LitBoring()
    ref_train, _ = _loaders()
    L.Trainer(**quiet_trainer_kwargs(str(tmp_path / "ref"), max_steps=final)).fit(reference, ref_train)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the uninterrupted run"


def test_set_lr_and_stop_at_the_step_in_the_receipt(lit_run):
    L.seed_everything(0)
    model = LitBoring()
    train, _ = _loaders()
    run = lit_run(model, train, trainer_kwargs={"max_epochs": 100})
    metrics = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        after_seq=0, kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS]))
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 3)
    changed = run.client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": 0.0125}))
    assert changed.receipt.applied_step == 3 and changed.hyperparameters[0].values["lr"] == 0.0125
    run.client.control.Step(control_pb2.StepRequest(steps=2))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 5)
    lrs = {}
    for frame in metrics:
        lrs.update((e.step, e.step_metrics.lr) for e in frame.events)
        if 5 in lrs:
            break
    metrics.cancel()
    assert lrs == {1: 0.05, 2: 0.05, 3: 0.05, 4: 0.0125, 5: 0.0125}
    assert run.client.control.Stop(control_pb2.StopRequest()).receipt.applied_step == 5
    run.join()
    assert run.trainer.global_step == 5 and run.trainer.optimizers[0].param_groups[0]["lr"] == 0.0125
