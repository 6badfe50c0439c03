"""Export writes one self-checking bundle; import refuses damaged or unsafe ones, naming the problem,
and touches nothing of the current session when it does."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from sessions.helpers import read_manifest, same, setup, weights, write_manifest
from onthefly import Trainer
from onthefly.sessions import Sessions, export_session
from onthefly.sessions.bundle import Bundle, BundleError, BundleWriter
from onthefly.sessions.history import read_events, read_sample_losses
from onthefly.sessions.session import read_bundle

MARKER = Path("/tmp/onthefly-sessions-test-pwned")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A bundle from a 7-step run with two ring checkpoints (every 2 steps, keep 2)."""
    folder = tmp_path_factory.mktemp("bundle")
    os.environ["ONTHEFLY_STORE"] = str(folder / "store")
    try:
        model, opt, loss, loader, sched, _ = setup()
        sessions = Sessions(every_n_steps=2, keep=2)
        trainer = Trainer("t", "bundle", max_steps=7, seed=3, serve=False, verbose=False, hooks=[sessions])
        trainer.fit(model, opt, loss, loader, scheduler=sched)
        info = export_session(trainer, folder / "run.onthefly")
    finally:
        os.environ.pop("ONTHEFLY_STORE", None)
    return Path(info.path), info, weights(model), sessions


def test_the_bundle_holds_state_checkpoints_history_and_lineage(exported):
    path, info, final, sessions = exported
    assert info.step == 7 and info.checkpoint_count == 3  # ring (steps 4, 6) + the state at export
    imported = read_bundle(path)
    assert same(imported.state["model"], final)  # the newest model, though no checkpoint was taken at the end
    steps = [c["step"] for c in imported.bundle.checkpoints]
    assert steps == [4, 6, 7]
    assert imported.lineage[-1]["session_id"] == sessions.session.session_id
    assert len(imported.state["metrics"]["loss"]) == 7
    samples = read_sample_losses([imported.bundle.read_bytes(r) for r in imported.bundle.history_files(".arrow")])
    assert samples.num_rows == 7 * 16 and set(samples.column("step").to_pylist()) == set(range(7))  # stamped before the step counts
    events = read_events([imported.bundle.read_bytes(r) for r in imported.bundle.history_files(".jsonl")])
    assert [e["step"] for e in events if e["kind"] == "step_metrics"] == list(range(1, 8))
    # Paths inside are bundle-relative.
    assert all(not rel.startswith("/") and ".." not in rel.split("/") for rel in imported.bundle.files)
    imported.bundle.close()


def _rebuild(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Write a copy of ``src`` with some files' bytes replaced (valid checksums: only content checks can object)."""
    with Bundle.open(src) as bundle:
        writer = BundleWriter(dst)
        for rel, entry in sorted(bundle.files.items(), key=lambda kv: kv[1]["offset"]):
            writer.add_bytes(rel, replace.get(rel, bundle.read_bytes(rel)), entry["kind"])
        extra = {k: v for k, v in bundle.manifest.items() if k not in ("files", "format", "format_version")}
        writer.finish(extra)


def _damaged(exported, tmp_path, how: str) -> Path:
    path = exported[0]
    bad = tmp_path / f"{how}.onthefly"
    data = bytearray(path.read_bytes())
    body, manifest, _ = read_manifest(path)
    resume_tensors = f"{manifest['resume_checkpoint']}/tensors.pt"
    entry = next(e for e in manifest["files"] if e["path"] == resume_tensors)
    if how == "truncated":
        bad.write_bytes(bytes(data[: len(data) * 2 // 3]))
    elif how == "checksum":
        data[entry["offset"] + entry["size"] // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    elif how == "manifest":
        data[len(body) + 10] ^= 0x01
        bad.write_bytes(bytes(data))
    elif how == "version":
        write_manifest(bad, body, dict(manifest, format_version=99))
    elif how == "path":
        files = [dict(e, path="../../outside/tensors.pt") if e["path"] == resume_tensors else e
                 for e in manifest["files"]]
        write_manifest(bad, body, dict(manifest, files=files))
    elif how == "pickle":
        import io

        buf = io.BytesIO()
        torch.save({"t0": torch.zeros(1), "evil": Evil()}, buf)
        _rebuild(path, bad, {resume_tensors: buf.getvalue()})
    elif how == "raw-pickle":
        _rebuild(path, bad, {resume_tensors: pickle.dumps({"t0": Evil()})})
    elif how == "format":
        bad.write_bytes(b"PK\x03\x04 this is a zip file, not a bundle" * 10)
    return bad


@pytest.mark.parametrize("how, problem, words", [
    ("truncated", "truncated", "truncated"),
    ("checksum", "checksum", "does not match its checksum"),
    ("manifest", "checksum", "manifest checksum"),
    ("version", "version", "format version 99"),
    ("path", "path", "escapes the bundle"),
    ("pickle", "pickle", "pickle payload"),
    ("raw-pickle", "pickle", "not a torch tensor archive"),
    ("format", "format", "not an OnTheFly session bundle"),
])
def test_bad_bundles_are_refused_with_the_problem_named(exported, tmp_path, how, problem, words):
    MARKER.unlink(missing_ok=True)
    bad = _damaged(exported, tmp_path, how)
    with pytest.raises(BundleError) as caught:
        read_bundle(bad).bundle.close()
    assert caught.value.problem == problem
    assert words in str(caught.value) and str(bad) in str(caught.value)
    assert not MARKER.exists(), "a pickle payload ran"


@pytest.mark.parametrize("how", ["truncated", "checksum", "pickle", "path"])
def test_resume_from_a_bad_bundle_touches_nothing(exported, tmp_path, store_dir, how):
    bad = _damaged(exported, tmp_path, how)
    model, opt, loss, loader, sched, _ = setup()
    before = weights(model)
    with pytest.raises(BundleError):
        Trainer("t", "bad", max_steps=3, serve=False, verbose=False).fit(
            model, opt, loss, loader, scheduler=sched, resume_from=bad)
    assert same(weights(model), before)
    assert not store_dir.exists()  # the new session was never even opened


def test_missing_bundle_is_named(tmp_path):
    with pytest.raises(BundleError, match="no such file") as caught:
        read_bundle(tmp_path / "nope.onthefly")
    assert caught.value.problem == "missing"


def test_a_bundle_for_another_model_is_refused_before_anything_changes(exported, store_dir):
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, _, loss, loader, _, _ = setup()
    before = weights(model)
    from onthefly.runtime.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="different model"):
        Trainer("t", "other", max_steps=1, serve=False, verbose=False).fit(model, opt, loss, loader,
                                                                            resume_from=exported[0])
    assert same(weights(model), before) and not store_dir.exists()


def test_export_never_replaces_a_file_unless_asked(exported, tmp_path):
    path, _, _, sessions = exported
    target = tmp_path / "mine.txt"
    target.write_text("the user's")
    from onthefly.runtime.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="already exists"):
        sessions.export(target)
    assert target.read_text() == "the user's"
    info = sessions.export(target, overwrite=True)
    assert info.path == str(target) and read_bundle(target).checkpoint.info.step == 7


def test_format_1_bundles_with_sha256_checksums_still_import_and_are_checked(exported, tmp_path):
    """Format 2 checksums files with CRC-32; a format 1 bundle (SHA-256 per file) imports the same,
    and a damaged byte in it is still caught."""
    import hashlib

    path, _, final, _ = exported
    body, manifest, _ = read_manifest(path)
    files = []
    for e in manifest["files"]:
        data = body[e["offset"]:e["offset"] + e["size"]]
        files.append({k: v for k, v in e.items() if k not in ("crc32", "zip-crc32")}
                     | {"sha256": hashlib.sha256(data).hexdigest()})
    # Format 2: tensor files carry the CRCs torch.save wrote into them, other files a CRC-32.
    assert all(("zip-crc32" if e["kind"] == "tensors" else "crc32") in e for e in manifest["files"])
    old = tmp_path / "v1.onthefly"
    write_manifest(old, body, dict(manifest, format_version=1, files=files))
    imported = read_bundle(old)
    assert imported.bundle.format_version == 1 and same(imported.state["model"], final)
    imported.bundle.close()

    entry = next(e for e in files if e["kind"] == "tensors")
    damaged = bytearray(body)
    damaged[entry["offset"] + entry["size"] // 2] ^= 0x01
    bad = tmp_path / "v1-bad.onthefly"
    write_manifest(bad, bytes(damaged), dict(manifest, format_version=1, files=files))
    with pytest.raises(BundleError, match="does not match its checksum") as caught:
        read_bundle(bad).bundle.close()
    assert caught.value.problem == "checksum"


@pytest.mark.parametrize("where", ["record", "central directory", "end record"])
def test_damage_anywhere_in_a_tensor_file_is_caught(exported, tmp_path, where):
    """zip-crc32 checks every record against the CRC torch.save wrote, and the directory against the manifest."""
    path = exported[0]
    body, manifest, _ = read_manifest(path)
    entry = next(e for e in manifest["files"] if e["path"] == f"{manifest['resume_checkpoint']}/tensors.pt")
    start, end = entry["offset"], entry["offset"] + entry["size"]
    directory = body.rfind(b"PK\x01\x02", start, end)  # the last central directory entry
    at = {"record": start + entry["size"] // 3, "central directory": directory + 16,  # its CRC field
          "end record": end - 6}[where]
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    bad = tmp_path / "bad.onthefly"
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its checksum") as caught:
        read_bundle(bad).bundle.close()
    assert caught.value.problem == "checksum"


def test_tensor_files_without_torch_crcs_get_a_full_crc32(tmp_path):
    """With torch.save's CRCs switched off, the writer checksums the whole file itself."""
    from onthefly.sessions import digest
    from onthefly.sessions.checkpoint import write_tensors

    torch.serialization.set_crc32_options(False)
    try:
        with open(tmp_path / "t.pt", "wb", buffering=0) as f:
            size, checksum = write_tensors(f, {"t0": torch.arange(10.0)})
    finally:
        torch.serialization.set_crc32_options(True)
    assert checksum == digest.of_file(tmp_path / "t.pt", "crc32") and size == (tmp_path / "t.pt").stat().st_size
    with open(tmp_path / "u.pt", "wb", buffering=0) as f:
        _, checksum = write_tensors(f, {"t0": torch.arange(10.0)})
    assert checksum[0] == "zip-crc32" and digest.file_matches(tmp_path / "u.pt", checksum)


def test_the_crc32_in_use_is_zlibs_crc32():
    """ISA-L's or zlib-ng's CRC-32 (used when installed) gives zlib's values: bundles stay interchangeable."""
    import zlib

    from onthefly.sessions import digest

    data = os.urandom(1 << 20) + b"tail"
    assert digest.crc32(data) == zlib.crc32(data) and digest.crc32(data, 7) == zlib.crc32(data, 7)
    assert digest.CRC32_BY in ("isal", "zlib_ng", "zlib")
