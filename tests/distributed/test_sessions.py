"""Sessions of a distributed run (CPU, gloo): rank 0 writes; an export resumed by every rank with the same
world size continues bit for bit as if the run had never stopped: under DDP, with every rank seeded alike
or each its own way (each rank resumes its own RNG states), and with the model sharded by FSDP2 (the full
state gathered at one step on every rank, sharded again on resume)."""

from __future__ import annotations

import pytest

from onthefly.client import connect
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, receipt_pb2, run_pb2, sessions_pb2, sessions_pb2_grpc
from support import wait_until


@pytest.mark.parametrize("kind, nproc", [("", 2), ("rankseed-", 2), ("fsdp-rankseed-", 2), ("fsdp-rankseed-", 3)],
                         ids=["ddp", "ddp-per-rank-seed", "fsdp", "fsdp-3-ranks"])
def test_export_then_resume_with_the_same_world_size_is_bit_identical(ddp_job, tmp_path, kind, nproc):
    job = ddp_job(nproc, f"{kind}export", name="export")

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    bundle = tmp_path / "run.onthefly"
    with connect(address=runs[0].address, token=runs[0].token) as client:
        def status():
            return client.control.GetStatus(control_pb2.GetStatusRequest()).status

        client.control.Step(control_pb2.StepRequest(steps=15))  # mid-epoch (6 steps each on 2 ranks, 4 on 3)
        wait_until(lambda: status().state == run_pb2.RUN_STATE_PAUSED and status().step == 15, what="15 steps")
        sessions = sessions_pb2_grpc.SessionsServiceStub(client.channel)
        exported = sessions.ExportSession(sessions_pb2.ExportSessionRequest(path=str(bundle)), timeout=120)
        assert exported.receipt.status == receipt_pb2.RECEIPT_STATUS_APPLIED, exported.receipt.reason
        assert exported.receipt.applied_step == 15
        client.control.Stop(control_pb2.StopRequest())
    job.wait()
    assert bundle.exists()
    resumed = ddp_job(nproc, f"{kind}resume", "25", name="resume").wait()
    baseline = ddp_job(nproc, f"{kind}baseline", "25", name="baseline").wait()
    assert [r["steps"] for r in resumed] == [25] * nproc
    for rank in range(nproc):  # as if it had never stopped, on every rank
        assert resumed[rank]["weights"] == baseline[rank]["weights"]
        assert resumed[rank]["weights"] == resumed[0]["weights"]


def test_scheduled_checkpoints_hold_every_ranks_rng_states(ddp_job):
    from onthefly.sessions import checkpoint as ck
    from onthefly.sessions.store import Store

    job = ddp_job(2, "scheduled", name="scheduled")
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        def status():
            return client.control.GetStatus(control_pb2.GetStatusRequest()).status

        client.control.Step(control_pb2.StepRequest(steps=14))
        wait_until(lambda: status().state == run_pb2.RUN_STATE_PAUSED and status().step == 14, what="14 steps")
        client.control.Stop(control_pb2.StopRequest())  # after the scheduled ones: they were queued first
    ranks = job.wait()
    assert [r["steps"] for r in ranks] == [14, 14]
    folders = Store(job.out / "store").session_folders()
    assert len(folders) == 1  # rank 0 alone writes
    # Due at steps 4, 8 and 12, each is taken at the next step every rank stops at (by step 14, the pause),
    # and one due when the newest was taken at the same step adds nothing.
    found = sorted((folders[0] / "checkpoints").glob("*/state.json"))
    assert found
    for path in found:
        checkpoint = ck.load(path.parent)
        rng = checkpoint.state()["rng"]
        assert len(rng["ranks"]) == 2 and checkpoint.info.step >= 4
        assert rng["ranks"][0]["now"]["torch"].equal(rng["now"]["torch"])
        assert not rng["ranks"][1]["now"]["torch"].equal(rng["now"]["torch"])  # rank 1 seeded 1 + rank


def test_an_fsdp_export_resumes_in_one_process_and_says_the_world_differs(ddp_job, tmp_path, monkeypatch, caplog):
    import logging

    import torch
    from torch.utils.data import DataLoader

    from onthefly.demos.boring import BoringModel, boring_dataset
    from onthefly.trainer.trainer import Trainer

    job = ddp_job(2, "fsdp-rankseed-export", name="export")
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    bundle = tmp_path / "run.onthefly"
    with connect(address=runs[0].address, token=runs[0].token) as client:
        def status():
            return client.control.GetStatus(control_pb2.GetStatusRequest()).status

        client.control.Step(control_pb2.StepRequest(steps=5))
        wait_until(lambda: status().state == run_pb2.RUN_STATE_PAUSED and status().step == 5, what="5 steps")
        sessions = sessions_pb2_grpc.SessionsServiceStub(client.channel)
        sessions.ExportSession(sessions_pb2.ExportSessionRequest(path=str(bundle)), timeout=120)
        client.control.Stop(control_pb2.StopRequest())
    ranks = job.wait()
    monkeypatch.setenv("ONTHEFLY_STORE", str(tmp_path / "store"))
    model = BoringModel()  # unsharded: the full state (by parameter name) loads into it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(boring_dataset(96), batch_size=8, shuffle=True)
    trainer = Trainer("one", "process", max_steps=5, serve=False, verbose=False)
    with caplog.at_level(logging.WARNING, logger="onthefly"):
        result = trainer.fit(model, optimizer, torch.nn.CrossEntropyLoss(), loader, device="cpu",
                             resume_from=bundle)
    assert result.steps == 5  # resumed at step 5: its budget is spent already
    assert torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist() == ranks[0]["weights"]
    assert any("RNG states of 2 ranks and this job has 1" in r.getMessage() for r in caplog.records)
