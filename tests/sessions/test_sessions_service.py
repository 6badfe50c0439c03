"""SessionsService against a real server on port 0: checkpoints on request, on pause, after a test and
on a schedule in a bounded ring; restore; export; live import that continues exactly; clear errors."""

from __future__ import annotations

import json

import grpc
import pytest
import torch

from onthefly import Trainer
from onthefly.sessions import Sessions, export_session
from onthefly.v1 import control_pb2, receipt_pb2, sessions_pb2, sessions_pb2_grpc
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from sessions.helpers import same, setup, weights
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def _stub(run) -> sessions_pb2_grpc.SessionsServiceStub:
    return sessions_pb2_grpc.SessionsServiceStub(run.client.channel)


def _status(run):
    return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status


def _step(run, n: int) -> int:
    target = _status(run).step + n
    run.client.control.Step(control_pb2.StepRequest(steps=n))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == target, what=f"step {target}")
    return target


def _start(live_run, sessions: Sessions, steps: int = 10_000, seed: int = 5, **fit):
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "svc", max_steps=steps, seed=seed, port=0, start_paused=True, verbose=False,
                      hooks=[sessions])
    return live_run(trainer, model, opt, loss, loader, val_loader=val, scheduler=sched, test_loader=val, **fit)


def test_checkpoints_on_request_in_a_bounded_ring(live_run):
    sessions = Sessions(keep=2, on_pause=False)
    run = _start(live_run, sessions)
    stub = _stub(run)
    made = []
    for n in (3, 2, 2):
        step = _step(run, n)
        response = stub.CreateCheckpoint(sessions_pb2.CreateCheckpointRequest(label=f"at {step}"))
        assert response.receipt.status == APPLIED and response.receipt.applied_step == step
        c = response.checkpoint
        assert (c.step, c.label, c.reason) == (step, f"at {step}", sessions_pb2.CHECKPOINT_REASON_REQUEST)
        made.append(c.checkpoint_id)
    listed = stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest())
    assert listed.keep == 2 and [c.checkpoint_id for c in listed.checkpoints] == made[1:]
    folder = sessions.session.folder.path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == sorted(made[1:])  # the oldest is gone from disk
    assert all((folder / c / "state.json").is_file() and (folder / c / "tensors.pt").is_file() for c in made[1:])


def test_checkpoints_on_pause_after_test_and_on_schedule(live_run):
    run = _start(live_run, Sessions(every_n_steps=4, on_pause=True, after_test=True))
    stub = _stub(run)

    def reasons():
        return [(c.step, sessions_pb2.CheckpointReason.Name(c.reason).removeprefix("CHECKPOINT_REASON_"))
                for c in stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()).checkpoints]

    wait_until(lambda: reasons() == [(0, "PAUSE")], what="the start-paused checkpoint")
    _step(run, 5)  # schedule at step 4, then the step budget pauses at 5
    wait_until(lambda: reasons() == [(0, "PAUSE"), (4, "SCHEDULE"), (5, "PAUSE")], what="schedule and pause")
    test = run.client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))
    assert test.receipt.status == APPLIED
    assert reasons()[-1] == (5, "TEST")
    run.client.control.Pause(control_pb2.PauseRequest())  # already paused: nothing trained, no new checkpoint
    assert len(reasons()) == 4


def test_restore_goes_back_exactly(live_run):
    run = _start(live_run, Sessions(on_pause=False))
    stub = _stub(run)
    _step(run, 13)  # mid-epoch (16 batches per epoch)
    back = stub.CreateCheckpoint(sessions_pb2.CreateCheckpointRequest()).checkpoint
    _step(run, 6)  # crosses an epoch boundary (scheduler step, validation)
    ctx = run.trainer.run.control.ctx
    first = weights(ctx.model)
    restored = stub.RestoreCheckpoint(sessions_pb2.RestoreCheckpointRequest(checkpoint_id=back.checkpoint_id))
    assert restored.receipt.status == APPLIED and restored.checkpoint.step == 13 == restored.receipt.applied_step
    assert _status(run).step == 13 and _status(run).epoch == 0
    _step(run, 6)
    assert same(weights(ctx.model), first)  # the same six steps again, bit for bit
    with pytest.raises(grpc.RpcError) as err:
        stub.RestoreCheckpoint(sessions_pb2.RestoreCheckpointRequest(checkpoint_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no checkpoint 'nope'" in err.value.details()


def test_live_import_continues_exactly_where_the_bundle_stopped(live_run, tmp_path):
    n, total = 21, 37
    model, opt, loss, loader, sched, val = setup()
    Trainer("t", "full", max_steps=total, seed=5, serve=False, verbose=False).fit(
        model, opt, loss, loader, val_loader=val, scheduler=sched)
    full = weights(model)
    model, opt, loss, loader, sched, val = setup()
    first = Trainer("t", "first", max_steps=n, seed=5, serve=False, verbose=False)
    first.fit(model, opt, loss, loader, val_loader=val, scheduler=sched)
    bundle = tmp_path / "first.onthefly"
    export_session(first, bundle)

    run = _start(live_run, Sessions(), steps=total, seed=123)  # another seed, and it trains a bit first
    _step(run, 5)
    response = _stub(run).ImportSession(sessions_pb2.ImportSessionRequest(path=str(bundle)))
    assert response.receipt.status == APPLIED and response.receipt.applied_step == n  # where it continues
    assert response.checkpoint.step == n
    assert [e.origin for e in response.session.lineage] == [sessions_pb2.SESSION_ORIGIN_NEW,
                                                            sessions_pb2.SESSION_ORIGIN_IMPORTED]
    assert response.session.lineage[-1].source == str(bundle) and response.session.metric_steps == n
    status = _status(run)
    assert (status.step, status.epoch, status.state) == (n, 1, PAUSED)
    test = run.client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))  # act on it like a live one
    assert test.receipt.status == APPLIED and test.result.samples == 256
    run.client.control.Resume(control_pb2.ResumeRequest())
    result = run.join()
    assert result.steps == total
    assert same(weights(run.trainer.run.control.ctx.model), full)


def test_bad_requests_get_actionable_codes_and_touch_nothing(live_run, tmp_path, slow_pump):
    sessions = Sessions(on_pause=False)
    run = _start(live_run, sessions)
    stub = _stub(run)
    _step(run, 2)
    ctx = run.trainer.run.control.ctx
    before = weights(ctx.model)
    manifest = (sessions.session.folder.path / "manifest.json").read_text()

    def code(call, request):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        return err.value.code(), err.value.details()

    c, msg = code(stub.ExportSession, sessions_pb2.ExportSessionRequest(path="relative.onthefly"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "absolute path" in msg
    taken = tmp_path / "taken.txt"
    taken.write_text("user data")
    c, msg = code(stub.ExportSession, sessions_pb2.ExportSessionRequest(path=str(taken)))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "already exists" in msg and taken.read_text() == "user data"
    c, msg = code(stub.ExportSession, sessions_pb2.ExportSessionRequest(path=str(tmp_path / "no" / "x.b")))
    assert c == grpc.StatusCode.NOT_FOUND and "does not exist" in msg

    garbage = tmp_path / "garbage.onthefly"
    garbage.write_bytes(b"ONTHEFLY-BUNDLE\n" + b"\x00" * 200)
    c, msg = code(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=str(garbage)))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "truncated" in msg and str(garbage) in msg

    other = torch.nn.Sequential(torch.nn.Linear(16, 3))
    o_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    _, _, loss, loader, _, _ = setup()
    t = Trainer("t", "other", max_steps=1, serve=False, verbose=False)
    t.fit(other, o_opt, loss, loader)
    export_session(t, tmp_path / "other.onthefly")
    c, msg = code(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=str(tmp_path / "other.onthefly")))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "different model" in msg

    assert same(weights(ctx.model), before) and _status(run).step == 2
    assert (sessions.session.folder.path / "manifest.json").read_text() == manifest
    info = stub.GetSession(sessions_pb2.GetSessionRequest()).session  # counts every step published (slow_pump)
    assert info.checkpoint_count == 0 and len(info.lineage) == 1 and info.metric_steps == 2

    ok = stub.ExportSession(sessions_pb2.ExportSessionRequest(path=str(tmp_path / "ok.onthefly")))
    assert ok.receipt.status == APPLIED and ok.bundle.step == 2 and ok.bundle.size_bytes > 0
    assert json.loads((sessions.session.folder.path / "manifest.json").read_text())["files"]
