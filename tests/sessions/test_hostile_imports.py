"""A refused import leaves the live run bit-identical (weights, step, lineage, ring, store files), and
every hostile bundle or path gets INVALID_ARGUMENT / FAILED_PRECONDITION / NOT_FOUND, never UNKNOWN."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import grpc
import pytest

from onthefly import Trainer
from onthefly.sessions import Sessions, export_session
from onthefly.v1 import control_pb2, receipt_pb2, sessions_pb2, sessions_pb2_grpc
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from sessions.forge import forge
from sessions.helpers import read_manifest, same, setup, weights, write_manifest
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A bundle from a 7-step run with two ring checkpoints (steps 4, 6) and the state at step 7."""
    folder = tmp_path_factory.mktemp("good")
    os.environ["ONTHEFLY_STORE"] = str(folder / "store")
    try:
        model, opt, loss, loader, sched, _ = setup()
        trainer = Trainer("t", "good", max_steps=7, seed=3, serve=False, verbose=False,
                          hooks=[Sessions(every_n_steps=2, keep=2)])
        trainer.fit(model, opt, loss, loader, scheduler=sched)
        return Path(export_session(trainer, folder / "good.onthefly").path)
    finally:
        os.environ.pop("ONTHEFLY_STORE", None)


def _ring_dirs(path: Path) -> list[str]:
    _, manifest, _ = read_manifest(path)
    return [e["dir"] for e in manifest["checkpoints"] if e["dir"] != manifest["resume_checkpoint"]]


def _raw_manifest(src: Path, dst: Path, edit) -> Path:
    body, manifest, _ = read_manifest(src)
    edit(manifest)
    write_manifest(dst, body, manifest)
    return dst


def _deep_manifest(src: Path, dst: Path) -> Path:
    import hashlib
    import struct

    body, _, _ = read_manifest(src)
    data = b'{"format": "onthefly-session-bundle", "format_version": 2, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    trailer = struct.pack("<QQ32s16s", len(body), len(data), hashlib.sha256(data).digest(), b"ONTHEFLY-END\n\x00\x00\x00")
    dst.write_bytes(body + data + trailer)
    return dst


def _set(path: list, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


HOSTILE = {
    "ring folder named session.json": lambda g, d: forge(g, d, rename={_ring_dirs(g)[0]: "session.json"}),
    "ring folder named lock": lambda g, d: forge(g, d, rename={_ring_dirs(g)[-1]: "lock"}),
    "step is a string": lambda g, d: forge(g, d, state=_set(["position", "step"], "abc")),
    "step is 2**70": lambda g, d: forge(g, d, state=_set(["position", "step"], 2**70)),
    "step is negative": lambda g, d: forge(g, d, state=_set(["position", "step"], -5)),
    "epoch is a float": lambda g, d: forge(g, d, state=_set(["position", "epoch"], 1.5)),
    "state is a list": lambda g, d: forge(g, d, state=_set(["state"], [])),
    "python RNG state is garbage": lambda g, d: forge(g, d, state=_set(["state", "rng", "now", "python"], "abc")),
    "numpy RNG state is garbage": lambda g, d: forge(g, d, state=_set(["state", "rng", "now", "numpy"], [1, 2])),
    "lr is a string": lambda g, d: forge(g, d, state=_set(["state", "optimizer", "param_groups", 0, "lr"], "abc")),
    "lr is 1e39": lambda g, d: forge(g, d, state=_set(["state", "optimizer", "param_groups", 0, "lr"], 1e39)),
    "files is an object": lambda g, d: _raw_manifest(g, d, _set(["files"], {})),
    "checkpoints is a string": lambda g, d: _raw_manifest(g, d, _set(["checkpoints"], "x")),
    "lineage is a number": lambda g, d: _raw_manifest(g, d, _set(["session", "lineage"], 5)),
    "lineage step is 2**70": lambda g, d: forge(g, d, manifest=lambda m: m["session"]["lineage"][0].update(
        from_step=2**70)),
    "session is a list": lambda g, d: _raw_manifest(g, d, _set(["session"], [])),
    "deep JSON": _deep_manifest,
}


def _stub(run):
    return sessions_pb2_grpc.SessionsServiceStub(run.client.channel)


def _status(run):
    return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status


def _step(run, n: int) -> None:
    target = _status(run).step + n
    run.client.control.Step(control_pb2.StepRequest(steps=n))
    wait_until(lambda: _status(run).state == PAUSED and _status(run).step == target, what=f"step {target}")


def _store_files(sessions: Sessions) -> dict[str, bytes]:
    """Every file of the session but its event history (a refused command is an event too)."""
    root = sessions.session.folder.path
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("events-")}


def _session(stub):
    s = stub.GetSession(sessions_pb2.GetSessionRequest()).session
    return s.lineage, s.checkpoint_count, s.metric_steps, s.sample_loss_rows


def _refused(call, request) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert err.value.code() in REFUSED, (err.value.code(), err.value.details())
    assert len(err.value.details()) < 500 and "\n" not in err.value.details()
    return err.value.details()


def test_every_hostile_bundle_is_refused_and_changes_nothing(live_run, good, tmp_path):
    sessions = Sessions(on_pause=False, keep=3)
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "victim", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[sessions])
    run = live_run(trainer, model, opt, loss, loader, scheduler=sched)
    stub = _stub(run)
    _step(run, 3)
    stub.CreateCheckpoint(sessions_pb2.CreateCheckpointRequest(label="mine"))
    ctx = run.trainer.run.control.ctx
    before = (weights(ctx.model), _status(run).step, _session(stub),
              stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()), _store_files(sessions),
              ctx.optimizer.state_dict()["param_groups"][0]["lr"])
    for name, make in HOSTILE.items():
        bad = make(good, tmp_path / f"{len(os.listdir(tmp_path))}.onthefly")
        try:
            response = stub.ImportSession(sessions_pb2.ImportSessionRequest(path=str(bad)))
        except grpc.RpcError as err:
            assert err.code() in REFUSED, (name, err.code(), err.details())
        else:
            assert response.receipt.status != APPLIED, f"{name}: imported"
        after = (weights(ctx.model), _status(run).step, _session(stub),
                 stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()), _store_files(sessions),
                 ctx.optimizer.state_dict()["param_groups"][0]["lr"])
        assert same(after[0], before[0]), f"{name}: the weights changed"
        assert after[1:] == before[1:], f"{name}: the run changed"
    _step(run, 1)  # and it still trains


def test_hostile_paths_get_a_clear_status(live_run, good, tmp_path):
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "paths", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(on_pause=False)])
    run = live_run(trainer, model, opt, loss, loader)
    stub = _stub(run)
    _step(run, 1)
    assert "folder" in _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=str(tmp_path)))
    assert "NUL" in _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=f"{tmp_path}/a\x00b"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "regular file" in _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=str(fifo)))
    long_name = str(tmp_path / ("x" * 300))
    assert "too long" in _refused(stub.ExportSession, sessions_pb2.ExportSessionRequest(path=long_name))
    huge = "/" + "y" * 1_000_000
    details = _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=huge))
    assert "too long" in details
    assert "regular file" in _refused(stub.ExportSession, sessions_pb2.ExportSessionRequest(path=str(fifo),
                                                                                             overwrite=True))
    assert _status(run).step == 1


def test_importing_a_bundle_twice_keeps_the_ring_consistent(live_run, good, tmp_path):
    sessions = Sessions(on_pause=False, keep=3)
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "twice", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[sessions])
    run = live_run(trainer, model, opt, loss, loader, scheduler=sched)
    stub = _stub(run)
    _step(run, 1)
    for _ in range(2):
        response = stub.ImportSession(sessions_pb2.ImportSessionRequest(path=str(good)))
        assert response.receipt.status == APPLIED, response.receipt.reason
    ids = [c.checkpoint_id for c in stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()).checkpoints]
    assert len(ids) == len(set(ids)) == 2
    for _ in range(3):  # evict the imported ones
        _step(run, 1)
        stub.CreateCheckpoint(sessions_pb2.CreateCheckpointRequest())
    for c in stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()).checkpoints:
        restored = stub.RestoreCheckpoint(sessions_pb2.RestoreCheckpointRequest(checkpoint_id=c.checkpoint_id))
        assert restored.receipt.status == APPLIED, restored.receipt.reason


def _zip_bomb(good: Path, dst: Path, inflated: int = 400 << 20) -> Path:
    """The resume checkpoint's tensor file re-packed with compressed records plus one record of
    ``inflated`` zero bytes (a few hundred KB in the bundle)."""
    import io
    import zipfile

    from onthefly.sessions.bundle import Bundle

    with Bundle.open(good) as bundle:
        original = bundle.read_bytes(bundle.tensors_of(bundle.resume_dir))
    packed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))
        prefix = src.infolist()[0].filename.split("/")[0]
        with out.open(f"{prefix}/data/bomb", "w", force_zip64=True) as f:
            chunk = bytes(8 << 20)
            for _ in range(inflated // len(chunk)):
                f.write(chunk)
    resume = None

    def replace(doc):
        nonlocal resume
        resume = doc

    forge(good, dst, state=replace)
    with Bundle.open(dst) as bundle:
        rel = bundle.tensors_of(bundle.resume_dir)
        files = {r: bundle.read_bytes(r) for r in bundle.files}
        manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "format", "format_version")}
        kinds = {r: e["kind"] for r, e in bundle.files.items()}
    files[rel] = packed.getvalue()
    from onthefly.sessions.bundle import BundleWriter

    writer = BundleWriter(dst, overwrite=True, durable=False)
    for r, data in files.items():
        writer.add_bytes(r, data, kinds[r])
    writer.finish(manifest)
    return dst


def test_a_zip_bomb_is_refused_before_it_is_inflated(live_run, good, tmp_path):
    import resource

    bomb = _zip_bomb(good, tmp_path / "bomb.onthefly")
    assert bomb.stat().st_size < 20 << 20
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "bomb", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(on_pause=False)])
    run = live_run(trainer, model, opt, loss, loader, scheduler=sched)
    _step(run, 1)
    before = weights(run.trainer.run.control.ctx.model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    details = _refused(_stub(run).ImportSession, sessions_pb2.ImportSessionRequest(path=str(bomb)))
    assert "without inflating it" in details
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 200 << 10, f"the peak RSS grew by {grown >> 10} MiB"  # the bomb inflates to 400 MiB
    assert same(weights(run.trainer.run.control.ctx.model), before) and _status(run).step == 1


class _FailingOs:
    """bundle.py's view of ``os``: opening ``denied`` raises PermissionError (what a file the trainer's user
    may not read gives; tests run as root, where chmod 000 does not deny), and every read of ``failing``
    after its first ``good_reads`` raises EIO (a disk failing under the manifest's checks)."""

    def __init__(self, real, denied: str, failing: str, good_reads: int) -> None:
        self._real, self._denied, self._failing, self._good_reads = real, denied, failing, good_reads
        self._fds: dict[int, int] = {}  # fd of ``failing`` -> reads left before EIO

    def __getattr__(self, name):
        return getattr(self._real, name)

    def open(self, path, flags, *args):
        if os.fspath(path) == self._denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        fd = self._real.open(path, flags, *args)
        if os.fspath(path) == self._failing:
            self._fds[fd] = self._good_reads
        return fd

    def close(self, fd):
        self._fds.pop(fd, None)
        return self._real.close(fd)

    def _read(self, fd):
        if fd in self._fds:
            if self._fds[fd] <= 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            self._fds[fd] -= 1

    def pread(self, fd, *args):
        self._read(fd)
        return self._real.pread(fd, *args)

    def preadv(self, fd, *args):
        self._read(fd)
        return self._real.preadv(fd, *args)


def test_unreadable_bundles_get_a_clear_status(live_run, good, tmp_path, monkeypatch):
    """Item 8's unreadable file: permission denied at open, EIO at the first read (a real one:
    /proc/self/mem at offset 0) and EIO after the manifest's checks, while the checkpoints are read."""
    import shutil

    from onthefly.sessions import bundle

    denied, failing = tmp_path / "denied.onthefly", tmp_path / "failing.onthefly"
    shutil.copy(good, denied)
    shutil.copy(good, failing)
    monkeypatch.setattr(bundle, "os", _FailingOs(os, str(denied), str(failing), good_reads=3))
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "unreadable", max_steps=10_000, seed=5, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(on_pause=False)])
    run = live_run(trainer, model, opt, loss, loader)
    stub = _stub(run)
    _step(run, 1)
    before = weights(model)
    assert "permission denied" in _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=str(denied)))
    for path in ("/proc/self/mem", str(failing)):
        details = _refused(stub.ImportSession, sessions_pb2.ImportSessionRequest(path=path))
        assert f"cannot import {path}: reading it failed (Input/output error)" in details and "copy" in details
    assert _status(run).step == 1 and same(weights(model), before)
