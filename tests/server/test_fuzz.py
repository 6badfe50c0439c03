"""Fuzz: 1,000 generated hostile bundles and 1,000 random control and session requests at a live run.
No call may answer UNKNOWN (or INTERNAL), nothing may crash, and the run's final weights must be
bit-identical to an undisturbed run's. ONTHEFLY_FUZZ=N changes the count of each (default 1,000)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import struct
from pathlib import Path

import grpc
import pytest

from onthefly import Trainer
from onthefly.demos.boring import boring_setup
from onthefly.sessions import Sessions, export_session
from onthefly.sessions.bundle import Bundle, BundleWriter
from onthefly.v1 import control_pb2, receipt_pb2, sessions_pb2, sessions_pb2_grpc
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from support import wait_until

N = int(os.environ.get("ONTHEFLY_FUZZ", "1000"))
STEPS = 400  # more than the fuzzing's step requests can reach, so the run is live throughout
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
TRAILER = struct.Struct("<QQ32s16s")
END = b"ONTHEFLY-END\n\x00\x00\x00"
HOSTILE_VALUES = [None, True, -1, -5, 1.5, float("nan"), 2**70, -(2**70), "", "abc", "../x", "/abs", "a\x00b",
                  "session.json", "lock", "manifest.json", [], [1, 2], {}, {"a": 1}, "x" * 5000]


def _fit(**kw):
    model, opt, loss, loader = boring_setup(n=64)
    return model, Trainer("fuzz", "run", max_steps=STEPS, seed=7, verbose=False,
                          hooks=[Sessions(on_pause=False, keep=2)], **kw), (model, opt, loss, loader)


# -- bundle generation ------------------------------------------------------------------------------
class Source:
    """A good bundle of the same model, taken apart once; mutations rebuild it in memory."""

    def __init__(self, path: Path) -> None:
        self.path, self.state = path, None
        self.raw = path.read_bytes()
        offset, length, _, _ = TRAILER.unpack(self.raw[-TRAILER.size:])
        self.body, self.manifest = self.raw[:offset], json.loads(self.raw[offset:offset + length])
        with Bundle.open(path) as bundle:
            self.files = {rel: bundle.read_bytes(rel) for rel in bundle.files}
            self.kinds = {rel: e["kind"] for rel, e in bundle.files.items()}
            self.resume = bundle.resume_dir

    def still_imports(self, path: Path) -> bool:
        """True if ``path`` reads as a good bundle; then its state must equal this one's exactly (a bit
        flip the checksums miss may only be one that changes nothing)."""
        from onthefly.sessions.session import read_bundle

        if self.state is None:
            imported = read_bundle(self.path)
            self.state = imported.state["model"]
            imported.bundle.close()
        try:
            imported = read_bundle(path)
        except Exception:  # noqa: BLE001 - refused, as a damaged bundle should be
            return False
        try:
            model = imported.state["model"]
            assert model.keys() == self.state.keys() and all(model[k].equal(v) for k, v in self.state.items()), \
                "a damaged bundle read as good, with other weights"
        finally:
            imported.bundle.close()
        return True

    def with_manifest(self, manifest) -> bytes:
        data = json.dumps(manifest).encode()
        return self.body + data + TRAILER.pack(len(self.body), len(data), hashlib.sha256(data).digest(), END)

    def rebuilt(self, out: Path, files: dict[str, bytes], extra: dict) -> None:
        writer = BundleWriter(out, overwrite=True, durable=False)
        for rel, data in files.items():
            writer.add_bytes(rel, data, self.kinds.get(rel, "json"))
        writer.finish(extra)


def _set_random(node, rng: random.Random, value):
    """Replace one randomly chosen value somewhere inside ``node`` (a JSON tree) with ``value``."""
    path = []
    while isinstance(node, (dict, list)) and node and (not path or rng.random() < 0.7):
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if path:
        parent, key = path[-1]
        parent[key] = value


def hostile_bundle(src: Source, rng: random.Random, out: Path) -> str:
    """Write one hostile bundle to ``out``; returns what was done to it. Every mutation here must make
    the bundle unimportable (damage, or a value validation must refuse)."""
    how = rng.choice(["flip", "truncate", "manifest", "manifest", "state", "state", "tensors", "deep"])
    if how == "flip":
        while True:
            data = bytearray(src.raw)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            out.write_bytes(bytes(data))
            if not src.still_imports(out):
                break  # else the bit was one no reader looks at (a zip local header's date, padding)
    elif how == "truncate":
        out.write_bytes(src.raw[: rng.randrange(len(src.raw))])
    elif how == "manifest":
        manifest = copy.deepcopy(src.manifest)
        target = rng.choice(["files", "checkpoints", "resume_checkpoint", "format_version", "session",
                             "lineage", "file-entry", "checkpoint-entry"])
        value = rng.choice(HOSTILE_VALUES)
        if target == "lineage":
            manifest["session"]["lineage"] = rng.choice([5, "x", [5], [{"from_step": rng.choice([-1, 2**70, "a"])}],
                                                         [{"created_unix": "x"}], {}])
        elif target == "file-entry":
            entry = rng.choice(manifest["files"])
            field = rng.choice(["offset", "size", "path"])
            entry[field] = rng.choice([-1, 2**70, "0", None, 1.5] if field != "path" else  # (a plain new name
                                      ["../x", "/a", None, 5, "", "a/../b", "a\x00b"])  # is valid: not hostile)
        elif target == "checkpoint-entry":
            entry = rng.choice(manifest["checkpoints"])
            entry["dir"] = rng.choice(["lock", "session.json", "checkpoints/", "checkpoints/a/b", "../x", 5, None])
        elif target == "format_version":
            manifest["format_version"] = rng.choice([0, 99, "2", 1.5, None, -1])
        elif target == "resume_checkpoint":
            manifest["resume_checkpoint"] = rng.choice(["../x", "session.json", "lock", 5, None, "checkpoints/",
                                                        "checkpoints/nope"])
        elif value is None or isinstance(value, (str, bool, int, float)) or target == "session" and value == {}:
            manifest[target] = rng.choice([5, "x", None, 1.5]) if target != "session" else rng.choice([[], 5, "x"])
        elif target == "session":
            manifest[target] = rng.choice([[], 5, "x", None, {"lineage": 5}, {"session_id": 5}])  # ({} is valid)
        elif target == "checkpoints":
            manifest[target] = rng.choice([[1, 2], {}, {"a": 1}, [None], [{"dir": "lock"}]])  # ([] is valid)
        else:
            manifest[target] = rng.choice([{}, "x", 5])
        out.write_bytes(src.with_manifest(manifest))
        how += f"/{target}"
    elif how == "state":
        files = dict(src.files)
        rel = f"{src.resume}/state.json"
        doc = json.loads(files[rel])
        target = rng.choice(["position", "step", "epoch", "batch", "state", "id", "tensors", "version", "rng",
                             "deep-state"])
        if target == "position":
            doc["position"] = rng.choice([[], "x", 5, None, {}])
        elif target in ("step", "epoch", "batch"):
            key = {"step": "step", "epoch": "epoch", "batch": "batch_in_epoch"}[target]
            doc["position"][key] = rng.choice([-1, -5, 2**70, 2**53, "abc", 1.5, None, [], True])
        elif target == "state":
            doc["state"] = rng.choice([[], "x", 5, None])
        elif target == "id":
            doc["checkpoint_id"] = rng.choice(["", "../x", "a/b", 5, None, "x" * 300])
        elif target == "tensors":
            doc["tensors"] = rng.choice([[], "x", {"file": "../x"}, {"file": 5}, {"size": -1}])
        elif target == "version":
            doc["version"] = rng.choice([0, 99, "1", None])
        elif target == "rng":
            doc["state"]["rng"]["now"][rng.choice(["python", "numpy", "torch"])] = rng.choice(
                ["abc", [1, 2], 5, None, {"__tensor__": "t0"}])
        else:
            _set_random(doc["state"], rng, {"__tensor__": "missing"} if rng.random() < 0.5 else
                        rng.choice([{"__ndarray__": "bogus", "shape": [1], "data": [1]}, {"__tuple__": 5},
                                    {"__dict__": [[1]]}]))
            if json.dumps(doc) == files[rel].decode():  # nothing changed: break the state itself
                doc["state"] = []
        files[rel] = json.dumps(doc).encode()
        src.rebuilt(out, files, {k: v for k, v in src.manifest.items()
                                 if k not in ("files", "format", "format_version")})
        how += f"/{target}"
    elif how == "tensors":
        files = dict(src.files)
        rel = f"{src.resume}/tensors.pt"
        files[rel] = rng.choice([b"", b"PK\x03\x04" + os.urandom(rng.randrange(1, 200)), os.urandom(64),
                                 b"\x80\x04\x95" + os.urandom(32), files[rel][: len(files[rel]) // 2]])
        src.rebuilt(out, files, {k: v for k, v in src.manifest.items()
                                 if k not in ("files", "format", "format_version")})
    else:  # deep JSON in the manifest
        depth = rng.choice([1000, 10_000, 200_000])
        manifest = json.dumps(src.manifest).encode()
        data = manifest[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
        out.write_bytes(src.body + data + TRAILER.pack(len(src.body), len(data), hashlib.sha256(data).digest(), END))
    return how


# -- control requests -------------------------------------------------------------------------------
def random_request(rng: random.Random, control, sessions, tmp: Path):
    """One random request that must never change the run's numbers (no valid hyperparameter change, no
    restore of a real checkpoint, no test pass): (call, request)."""
    choice = rng.randrange(12)
    if choice == 0:
        return control.GetStatus, control_pb2.GetStatusRequest()
    if choice == 1:
        return control.Pause, control_pb2.PauseRequest()
    if choice == 2:
        return control.Step, control_pb2.StepRequest(steps=rng.choice([1, 2, 0, -1, -(2**62), 2**53, 2**62]))
    if choice in (3, 4):
        key = rng.choice(["lr", "momentum", "weight_decay", "dampening", "nope", "", "x" * 10_000, "params",
                          "nesterov", "lr\x00"])
        value = rng.choice([-1.0, float("nan"), float("inf"), 1e39, 1e300, 2.0, -1e-9, 3.5e38])
        if key in ("lr", "weight_decay", "dampening") and value == 2.0:
            value = -2.0  # 2.0 is a valid lr: it would change the numbers
        groups = rng.choice([[], [0], [5], [-1], [0, 99]])
        return control.SetHyperparameters, control_pb2.SetHyperparametersRequest(values={key: value}, groups=groups)
    if choice == 5:
        return sessions.RestoreCheckpoint, sessions_pb2.RestoreCheckpointRequest(
            checkpoint_id=rng.choice(["", "nope", "../x", "x" * 100_000, "a\x00b"]))
    if choice == 6:
        return sessions.ExportSession, sessions_pb2.ExportSessionRequest(
            path=rng.choice(["", "relative.b", "/no/such/folder/x.b", str(tmp / ("y" * 300)), "/a\x00b",
                             "/" + "z" * 100_000, str(tmp)]), overwrite=rng.random() < 0.5)
    if choice == 7:
        return sessions.ImportSession, sessions_pb2.ImportSessionRequest(
            path=rng.choice(["", "relative.b", str(tmp), "/a\x00b", str(tmp / "missing.b"), "/" + "q" * 5000,
                             "/dev/null", "/proc/self/mem", "/dev/zero"]))
    if choice == 8:
        return sessions.ListCheckpoints, sessions_pb2.ListCheckpointsRequest()
    if choice == 9:
        return sessions.GetSession, sessions_pb2.GetSessionRequest()
    if choice == 10:
        return sessions.CreateCheckpoint, sessions_pb2.CreateCheckpointRequest(label=rng.choice(["", "x" * 10_000]))
    return control.GetStatus, control_pb2.GetStatusRequest()


def _call(call, request):
    try:
        return call(request, timeout=30), None
    except grpc.RpcError as err:
        return None, err


@pytest.mark.timeout(1800)
def test_hostile_bundles_and_random_requests_change_nothing(live_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ONTHEFLY_STORE", str(tmp_path / "store"))
    model, trainer, args = _fit(serve=False)
    trainer.fit(*args)
    undisturbed = {k: v.clone() for k, v in model.state_dict().items()}

    model, first, args = _fit(serve=False)  # a compatible bundle to mutate: same model, 5 steps
    first.max_steps = 5
    first.fit(*args)
    source = Source(Path(export_session(first, tmp_path / "good.onthefly").path))

    model, trainer, args = _fit(port=0, start_paused=True)
    run = live_run(trainer, *args)
    control = run.client.control
    sessions = sessions_pb2_grpc.SessionsServiceStub(run.client.channel)
    rng = random.Random(int(os.environ.get("ONTHEFLY_FUZZ_SEED", "22")))
    bad = tmp_path / "hostile.onthefly"
    outcomes: dict[str, int] = {}
    for i in range(2 * N):
        if i % 2 == 0:
            how = hostile_bundle(source, rng, bad)
            response, err = _call(sessions.ImportSession, sessions_pb2.ImportSessionRequest(path=str(bad)))
            if err is None:
                assert response.receipt.status != receipt_pb2.RECEIPT_STATUS_APPLIED, f"bundle {i} ({how}) imported"
            what = f"import/{how}"
        else:
            call, request = random_request(rng, control, sessions, tmp_path)
            response, err = _call(call, request)
            what = type(request).__name__.removesuffix("Request")
        if err is not None:
            assert err.code() in ALLOWED, (i, what, err.code(), err.details())
            assert len(err.details()) <= 500 and "Exception calling application" not in err.details()
            what += f":{err.code().name}"
        outcomes[what] = outcomes.get(what, 0) + 1
        assert run.thread.is_alive(), f"the run ended at request {i}: {run.error!r}"
    print("outcomes:", json.dumps(outcomes, indent=1, sort_keys=True))
    wait_until(lambda: control.GetStatus(control_pb2.GetStatusRequest()).status.state in (PAUSED,) or
               not run.thread.is_alive(), what="a quiet run")
    control.Resume(control_pb2.ResumeRequest())
    result = run.join(timeout=600)
    assert result.steps == STEPS
    final = run.trainer.run.control.ctx.model.state_dict()
    assert all(k in final and final[k].equal(v) for k, v in undisturbed.items()), "the weights differ"
    assert not math.isnan(result.steps)
