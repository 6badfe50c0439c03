"""The native Trainer under torchrun (CPU, gloo): same weights as a bare DDP (or FSDP2) loop; rank 0 alone serves;
rank 0's decisions (pause, step N, set lr, stop) land on the same step on every rank."""

from __future__ import annotations

import pytest

from onthefly.client import connect
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, receipt_pb2, run_pb2
from support import wait_until

PAUSED = run_pb2.RUN_STATE_PAUSED
APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


@pytest.mark.parametrize("kind", ["", "fsdp-"], ids=["ddp", "fsdp"])
def test_weights_are_bit_identical_with_and_without_onthefly(ddp_job, kind):
    bare = ddp_job(2, f"{kind}bare", "30", name="bare")
    bare_ranks = bare.wait()
    hosted = ddp_job(2, f"{kind}trainer", "30", name="trainer")
    hosted_ranks = hosted.wait()
    assert [r["served"] for r in hosted_ranks] == [True, False]
    assert [r["steps"] for r in hosted_ranks] == [30, 30]
    assert hosted_ranks[0]["weights"] == hosted_ranks[1]["weights"]
    assert hosted_ranks[0]["weights"] == bare_ranks[0]["weights"]


@pytest.mark.parametrize("nproc", [2, 3])
def test_every_rank_takes_rank0_decisions_at_the_same_step(ddp_job, nproc):
    job = ddp_job(nproc, "steer")

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    pauses: list[int] = []
    with connect(address=runs[0].address, token=runs[0].token) as client:
        control = client.control

        def status():
            return control.GetStatus(control_pb2.GetStatusRequest()).status

        wait_until(lambda: status().state == PAUSED, what="the run to start paused")
        control.Step(control_pb2.StepRequest(steps=3))
        wait_until(lambda: status().state == PAUSED and status().step == 3, what="3 steps on every rank")
        changed = control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": 0.0125}))
        assert changed.receipt.status == APPLIED and changed.receipt.applied_step == 3
        tries = 50 if nproc == 2 else 10
        for _ in range(tries):
            assert control.Resume(control_pb2.ResumeRequest()).receipt.status == APPLIED
            receipt = control.Pause(control_pb2.PauseRequest()).receipt
            assert receipt.status == APPLIED
            pauses.append(receipt.applied_step)
        final = pauses[-1]
        later = control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": 0.02})).receipt
        assert later.applied_step == final
        control.Step(control_pb2.StepRequest(steps=2))
        wait_until(lambda: status().state == PAUSED and status().step == final + 2, what="2 more steps")
        assert len(live_runs()) == 1  # no other rank wrote a discovery file
        stop = control.Stop(control_pb2.StopRequest()).receipt
        assert stop.status == APPLIED and stop.applied_step == final + 2
    ranks = job.wait()
    assert [r["served"] for r in ranks] == [True] + [False] * (nproc - 1)
    assert not any(r["server_code_loaded"] for r in ranks[1:])
    assert pauses == sorted(pauses) and pauses[0] >= 3
    for r in ranks:
        assert r["steps"] == final + 2
        # every pause of rank 0's receipts, at the same step on every rank (start, step 3, 50 pauses, step 2)
        assert r["pauses"] == [0, 3, *pauses, final + 2]
        expected = [(s, 0.05 if s <= 3 else 0.0125 if s <= final else 0.02) for s in range(1, final + 3)]
        assert [tuple(row) for row in r["lrs"]] == expected
        assert r["weights"] == ranks[0]["weights"]


def test_health_checks_on_rank0_alone_leave_ddp_in_step(ddp_job):
    from onthefly.v1 import diagnostics_pb2, diagnostics_pb2_grpc

    job = ddp_job(2, "steer")
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        control = client.control

        def status():
            return control.GetStatus(control_pb2.GetStatusRequest()).status

        control.Step(control_pb2.StepRequest(steps=3))
        wait_until(lambda: status().state == PAUSED and status().step == 3, what="3 steps")
        health = diagnostics_pb2_grpc.DiagnosticsServiceStub(client.channel)
        checks = [diagnostics_pb2.HEALTH_CHECK_GRADIENTS, diagnostics_pb2.HEALTH_CHECK_DETERMINISM]
        report = health.RunHealthCheck(diagnostics_pb2.RunHealthCheckRequest(checks=checks), timeout=120)
        assert report.receipt.status == APPLIED and report.receipt.applied_step == 3  # a backward, no all-reduce
        control.Step(control_pb2.StepRequest(steps=2))
        wait_until(lambda: status().state == PAUSED and status().step == 5, what="2 more steps after the checks")
        control.Stop(control_pb2.StopRequest())
    ranks = job.wait()
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_a_command_that_runs_an_fsdp_model_on_rank0_alone_is_refused_not_hung(ddp_job):
    from onthefly.v1 import diagnostics_pb2, diagnostics_pb2_grpc

    job = ddp_job(2, "fsdp-steer")
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        control = client.control

        def status():
            return control.GetStatus(control_pb2.GetStatusRequest()).status

        control.Step(control_pb2.StepRequest(steps=3))
        wait_until(lambda: status().state == PAUSED and status().step == 3, what="3 steps")
        health = diagnostics_pb2_grpc.DiagnosticsServiceStub(client.channel)
        report = health.RunHealthCheck(diagnostics_pb2.RunHealthCheckRequest(
            checks=[diagnostics_pb2.HEALTH_CHECK_GRADIENTS]), timeout=120)
        assert report.receipt.status == APPLIED and report.receipt.applied_step == 3
        messages = [f.message for f in report.findings]
        assert any("sharded across ranks (FSDP)" in m for m in messages), messages
        control.Step(control_pb2.StepRequest(steps=2))  # every rank still trains in step
        wait_until(lambda: status().state == PAUSED and status().step == 5, what="2 more steps after the check")
        control.Stop(control_pb2.StopRequest())
    ranks = job.wait()
    assert ranks[0]["weights"] == ranks[1]["weights"] and [r["steps"] for r in ranks] == [5, 5]
