"""A full disk never ends training: a scheduled checkpoint that cannot be written is a warning and
leaves no partial files; an export to a full disk is refused with how much room it needed; a killed
export's temporary file is removed at the next start. A real small tmpfs (needs root to mount)."""

from __future__ import annotations

import errno
import os
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


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_checkpoint_whose_state_cannot_be_written_leaves_no_tensors_behind(tmp_path, monkeypatch):
    """The tensors file is written first: when state.json then fails (the disk filled in between), the
    tensors file is removed too (a full tmpfs fails the tensors file itself, before anything is left)."""
    from onthefly.sessions.store import SessionFolder

    write_bytes, failed = SessionFolder.write_bytes, []

    def failing_state(self, rel, data):
        if rel.startswith("checkpoints/") and rel.endswith("/state.json") and not failed:
            failed.append(rel)
            _no_space()
        return write_bytes(self, rel, data)

    monkeypatch.setattr(SessionFolder, "write_bytes", failing_state)
    sessions = Sessions(store=tmp_path / "store", every_n_steps=2, on_pause=False, after_test=False, durable=False)
    model, opt, loss, loader, sched, _ = setup()
    Trainer("t", "half", max_steps=6, seed=5, serve=False, verbose=False, hooks=[sessions]).fit(
        model, opt, loss, loader, scheduler=sched)
    assert len(failed) == 1 and failed[0].startswith("checkpoints/step0000002-")
    for tensors in (sessions.session.folder.path / "checkpoints").rglob("*"):
        if tensors.is_file():
            assert (tensors.parent / "state.json").is_file(), f"{tensors} was left without its state.json"
    assert [c.step for c in sessions.checkpoints()] == [4, 6]


def test_an_export_that_fails_half_way_leaves_no_partial_file(live_run, tmp_path, monkeypatch):
    """The bundle's leading bytes are written, then the disk fills while the tensors are: the export is
    REJECTED with the room it needed and its temporary file is removed (a full tmpfs fails the first write,
    inside BundleWriter, so it never reaches this path)."""
    from onthefly.sessions.bundle import BundleWriter

    monkeypatch.setattr(BundleWriter, "add_tensors", _no_space)
    sessions = Sessions(store=tmp_path / "store", on_pause=False, durable=False)
    model, opt, loss, loader, sched, _ = setup()
    trainer = Trainer("t", "export", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[sessions])
    run = live_run(trainer, model, opt, loss, loader, scheduler=sched)
    run.client.control.Step(control_pb2.StepRequest(steps=2))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == 2, what="step 2")
    target = tmp_path / "run.onthefly"
    export = sessions_pb2_grpc.SessionsServiceStub(run.client.channel).ExportSession(
        sessions_pb2.ExportSessionRequest(path=str(target)))
    assert export.receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED
    assert "no space left on device" in export.receipt.reason and "needed ~" in export.receipt.reason
    assert not target.exists() and not (tmp_path / "run.onthefly.partial").exists()
    assert _status(run).step == 2
