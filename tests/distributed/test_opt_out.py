"""Trainer(distributed=False) under torchrun: every rank is a stand-alone run, steered on its own."""

from __future__ import annotations

from onthefly.client import connect
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, run_pb2
from support import wait_until


def test_every_rank_serves_and_is_steered_on_its_own(ddp_job):
    job = ddp_job(2, "solo")

    def both_serving():
        assert job.proc.poll() is None, job.log()
        runs = live_runs()
        return runs if len(runs) == 2 else None

    runs = wait_until(both_serving, timeout=120, interval=0.1, what="both ranks to serve")
    assert len({r.pid for r in runs}) == 2 and len({r.port for r in runs}) == 2
    budgets = {runs[0].pid: 3, runs[1].pid: 5}  # different step counts: no rank waits for another
    for run in runs:
        with connect(address=run.address, token=run.token) as client:
            def status():
                return client.control.GetStatus(control_pb2.GetStatusRequest()).status

            client.control.Step(control_pb2.StepRequest(steps=budgets[run.pid]))
            wait_until(lambda: status().state == run_pb2.RUN_STATE_PAUSED and status().step == budgets[run.pid],
                       what=f"pid {run.pid} to take {budgets[run.pid]} steps")
            assert client.control.Stop(control_pb2.StopRequest()).receipt.applied_step == budgets[run.pid]
    ranks = job.wait()
    assert [r["served"] for r in ranks] == [True, True]
    assert [r["world"] for r in ranks] == [False, False]
    assert sorted(r["steps"] for r in ranks) == [3, 5]
    assert {r["pid"]: r["steps"] for r in ranks} == budgets
