"""A full disk never ends training: a scheduled checkpoint that cannot be written is a warning and
leaves no partial files; an export to a full disk is refused with how much room it needed; a killed
export's temporary file is removed at the next start. A real small tmpfs (needs root to mount)."""

from __future__ import annotations

import threading

import pytest

from onthefly import Trainer
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, diagnostics_pb2, diagnostics_pb2_grpc, receipt_pb2, sessions_pb2, sessions_pb2_grpc, telemetry_pb2
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from sessions.helpers import same, setup, weights
from support import fill_disk as fill, mount_small_disk, unmount_small_disk, wait_until


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not mount_small_disk(disk, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        unmount_small_disk(disk)


def _status(run):
    return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status


def test_a_full_disk_never_ends_training(live_run, small_disk, tmp_path):
    model, opt, loss, loader, sched, _ = setup()
    Trainer("t", "plain", max_steps=12, seed=5, serve=False, verbose=False, hooks=[Sessions(enabled=False)]).fit(
        model, opt, loss, loader, scheduler=sched)
    undisturbed = weights(model)

    sessions = Sessions(store=small_disk / "store", every_n_steps=2, on_pause=False, durable=False)
    model, opt, loss, loader, sched, _ = setup()
    trainer = Trainer("t", "full", max_steps=12, seed=5, port=0, start_paused=True, verbose=False, hooks=[sessions])
    run = live_run(trainer, model, opt, loss, loader, scheduler=sched)
    logs = []
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(kinds=[telemetry_pb2.EVENT_KIND_LOG]))
    reader = threading.Thread(target=lambda: logs.extend(e.log.message for f in stream for e in f.events))
    reader.start()
    run.client.control.Step(control_pb2.StepRequest(steps=2))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 2, what="step 2")
    fill(small_disk)

    stub = sessions_pb2_grpc.SessionsServiceStub(run.client.channel)
    target = small_disk / "run.onthefly"
    export = stub.ExportSession(sessions_pb2.ExportSessionRequest(path=str(target)))
    assert export.receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED
    assert "no space left on device" in export.receipt.reason and "needed ~" in export.receipt.reason
    assert not target.exists() and not (small_disk / "run.onthefly.partial").exists()

    run.client.control.Step(control_pb2.StepRequest(steps=2))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 4, what="step 4")
    health = diagnostics_pb2_grpc.DiagnosticsServiceStub(run.client.channel).RunHealthCheck(
        diagnostics_pb2.RunHealthCheckRequest(checks=[diagnostics_pb2.HEALTH_CHECK_CHECKPOINTS]))
    [finding] = health.findings  # the failed checkpoint is a finding, not only a log line that scrolls past
    assert finding.severity == diagnostics_pb2.FINDING_SEVERITY_WARNING
    assert "no space left on device" in finding.message and finding.evidence["last_step"] == 4

    run.client.control.Resume(control_pb2.ResumeRequest())
    assert run.join().steps == 12  # scheduled checkpoints at 4, 6, ... failed; training went on
    reader.join(30)
    assert same(weights(model), undisturbed)
    assert any("checkpoint at step 4 was not written" in m and "no space left on device" in m for m in logs), logs
    folder = sessions.session.folder.path
    assert not list(folder.rglob("*.partial"))
    for checkpoint in (folder / "checkpoints").iterdir():  # only complete checkpoints are left
        assert (checkpoint / "state.json").is_file() and (checkpoint / "tensors.pt").is_file()
    assert [c.step for c in sessions.checkpoints()] == [2]


def test_a_killed_exports_partial_file_is_removed_at_the_next_start(tmp_path):
    from onthefly.sessions.store import Store

    store = Store(tmp_path / "store")
    first = store.open_session()
    partial = tmp_path / "run.onthefly.partial"
    partial.write_bytes(b"half a bundle")
    first.note_partial(partial)
    mine = tmp_path / "mine.onthefly.partial"
    mine.write_bytes(b"the user's")
    first.close()  # as a kill would: the lock goes with the process, the run never ended
    store.open_session(keep_crashed=0)
    assert not partial.exists() and mine.read_bytes() == b"the user's"
