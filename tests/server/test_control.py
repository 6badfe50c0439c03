"""Receipts report the step a command took effect; bad input gets an actionable status."""

from __future__ import annotations

import math

import grpc
import pytest

from onthefly import Trainer
from onthefly.demos.boring import boring_setup
from onthefly.runtime.errors import FailedPrecondition
from onthefly.runtime.steering import Pause
from onthefly.v1 import control_pb2, receipt_pb2, telemetry_pb2
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def _status(run):
    return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status


@pytest.fixture
def run(live_run):
    model, opt, loss, loader = boring_setup(n=4096)
    return live_run(Trainer("t", "control", max_epochs=50, port=0, start_paused=True, verbose=False),
                    model, opt, loss, loader, test_loader=loader)


def test_step_pause_resume_receipts_name_their_step(run):
    step = run.client.control.Step(control_pb2.StepRequest(steps=7)).receipt
    assert step.status == APPLIED and step.applied_step == 0
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 7,
               what="the step budget to be spent")
    resume = run.client.control.Resume(control_pb2.ResumeRequest()).receipt
    assert resume.status == APPLIED and resume.applied_step == 7
    pause = run.client.control.Pause(control_pb2.PauseRequest()).receipt
    assert pause.status == APPLIED and pause.applied_step >= 7
    # The loop is really stopped when Pause returns: the step does not move any more.
    status = _status(run)
    assert status.state == PAUSED and status.step == pause.applied_step
    assert _status(run).step == pause.applied_step


def test_resume_during_a_step_budget_runs_on_instead_of_pausing_later(run):
    run.client.control.Step(control_pb2.StepRequest(steps=200))
    resume = run.client.control.Resume(control_pb2.ResumeRequest()).receipt
    assert resume.status == APPLIED and resume.applied_step < 200
    assert _status(run).pending_steps == 0
    wait_until(lambda: _status(run).step > 210, what="the run to go past the dropped step budget")
    assert _status(run).state != PAUSED


def test_set_lr_takes_effect_at_the_step_in_its_receipt(run):
    metrics = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS]))
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    wait_until(lambda: _status(run).step == 3 and _status(run).state == PAUSED)
    response = run.client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(
        values={"lr": 0.0125, "momentum": 0.5}))
    assert response.receipt.status == APPLIED and response.receipt.applied_step == 3
    assert response.hyperparameters[0].values["lr"] == 0.0125
    assert response.hyperparameters[0].values["momentum"] == 0.5
    run.client.control.Step(control_pb2.StepRequest(steps=2))
    seen = {}
    for frame in metrics:
        for e in frame.events:
            seen[e.step] = e.step_metrics.lr
        if 5 in seen:
            break
    metrics.cancel()
    assert seen[3] == 0.05 and seen[4] == 0.0125 and seen[5] == 0.0125


def test_run_test_now_and_keep_training(run):
    run.client.control.Resume(control_pb2.ResumeRequest())
    response = run.client.control.RunTest(control_pb2.RunTestRequest())
    assert response.receipt.status == APPLIED
    assert response.result.split == "test" and response.result.samples == 4096
    at = response.receipt.applied_step
    wait_until(lambda: _status(run).step > at + 5, what="training to continue after the test")
    paused = run.client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))
    assert _status(run).state == PAUSED
    assert _status(run).step == paused.receipt.applied_step


@pytest.mark.parametrize("values,needle", [
    ({"lr": -1.0}, "lr must be >= 0"),
    ({"learning_rate": 0.1}, "has no hyperparameter 'learning_rate'"),
    ({"momentum": 2.0}, "momentum must be in [0, 1]"),
    ({}, "no hyperparameters given"),
    ({"lr": 1e39}, "lr=1e+39 is too large"),  # finite, but the float32 step cannot hold it
    ({"weight_decay": 1e30}, "weight_decay=1e+30 is too large"),
    ({"x" * 1_000_000: 0.1}, "has no hyperparameter 'xxxx"),  # a 1 MB key: the reason, not a trailer overflow
])
def test_bad_hyperparameters_are_invalid_argument(run, values, needle):
    with pytest.raises(grpc.RpcError) as err:
        run.client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values=values))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details() and len(err.value.details()) < 500
    assert _status(run).hyperparameters[0].values["lr"] == 0.05  # nothing changed
    assert run.client.control.Step(control_pb2.StepRequest(steps=2)).receipt.status == APPLIED
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 2, what="two steps")


def test_wrong_state_is_failed_precondition(run, live_run):
    with pytest.raises(grpc.RpcError) as err:
        run.client.control.Step(control_pb2.StepRequest(steps=0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    run.client.control.Resume(control_pb2.ResumeRequest())
    with pytest.raises(grpc.RpcError) as err:
        run.client.control.Resume(control_pb2.ResumeRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not paused" in err.value.details()
    model, opt, loss, loader = boring_setup(n=32)
    no_test = live_run(Trainer("t", "no-test", max_steps=1, port=0, start_paused=True, verbose=False),
                       model, opt, loss, loader)
    with pytest.raises(grpc.RpcError) as err:
        no_test.client.control.RunTest(control_pb2.RunTestRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "test_loader=" in err.value.details()


def test_pause_of_a_finished_run_is_refused(run):
    run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
    run.join()
    with pytest.raises(FailedPrecondition, match="finished"):
        run.trainer.run.control.submit(Pause())


def test_stop_ends_fit_cleanly_and_runs_the_end_test_unless_skipped(live_run):
    model, opt, loss, loader = boring_setup(n=64)
    stopped = live_run(Trainer("t", "stop", max_epochs=1000, port=0, start_paused=True, verbose=False),
                       model, opt, loss, loader, test_loader=loader, do_test_after=True)
    receipt = stopped.client.control.Stop(control_pb2.StopRequest()).receipt
    result = stopped.join()
    assert receipt.status == APPLIED and result.stopped_early and result.steps == 0
    assert result.test is not None and result.test.samples == 64


def test_status_reports_the_live_loss_and_throughput(slow_pump, run):
    assert math.isnan(_status(run).last_loss)  # before the first step
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    status = wait_until(lambda: (s := _status(run)).state == PAUSED and s.step == 3 and s,
                        what="3 steps then a pause")
    # The pump is slowed to an hour (slow_pump): a paused run's status still carries the loss and
    # throughput of the step it reports.
    assert 0 < status.last_loss < 10 and status.samples_per_second > 0
    assert status.total_steps == 50 * 256 and status.max_epochs == 50 and status.device == "cpu"
