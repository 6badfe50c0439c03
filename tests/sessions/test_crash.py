"""kill -9 at a random moment while checkpoints and history are being written leaves the store
readable: every complete checkpoint loads and verifies, every file is known to the manifest, at most
the in-flight write is missing, and the next session cleans it all (and nothing else)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

from onthefly.sessions import checkpoint as ck
from onthefly.sessions.history import read_events, read_sample_losses
from onthefly.sessions.store import Store, read_manifest

CHILD = Path(__file__).with_name("writer_child.py")


def _kill_after(steps: int, store_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(CHILD)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, ONTHEFLY_STORE=str(store_dir)))
    seen = threading.Event()

    def watch():
        for line in proc.stdout:
            if line.strip() == f"step {steps}":
                seen.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert seen.wait(120), f"the child never reached step {steps}: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        os.kill(proc.pid, signal.SIGKILL)  # mid-write, almost surely: it writes a checkpoint every step
    finally:
        proc.kill()
        proc.wait(30)


def _check_readable(folder: Path) -> int:
    manifest = read_manifest(folder)
    assert manifest is not None, "the manifest must always be readable"
    listed = set(manifest["files"])
    known = listed | {f + ".partial" for f in listed} | {"manifest.json", "manifest.json.partial", "lock"}
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert on_disk <= known, f"files the manifest does not know: {on_disk - known}"
    complete = incomplete = 0
    for d in sorted((folder / "checkpoints").iterdir()) if (folder / "checkpoints").exists() else []:
        if (d / ck.STATE_FILE).exists():
            checkpoint = ck.load(d, verify=True)  # sizes and checksums match, tensors load (weights_only)
            assert checkpoint.state()["model"]["0.weight"].shape == (2048, 256)
            complete += 1
        elif any(d.iterdir()):
            incomplete += 1
    assert incomplete <= 1, "only the in-flight checkpoint may be incomplete"
    history = [folder / f for f in listed if f.startswith("history/") and (folder / f).exists()]
    read_sample_losses([p for p in history if p.suffix == ".arrow"])
    read_events([p for p in history if p.suffix == ".jsonl"])
    json.loads((folder / "session.json").read_text())
    return complete


def test_kill_9_during_writes_leaves_a_readable_store(tmp_path):
    store_dir = tmp_path / "store"
    rounds = [random.randint(3, 9), random.randint(3, 9)]
    for steps in rounds:
        _kill_after(steps, store_dir)
        folders = Store(store_dir).session_folders()
        assert len(folders) == 1
        assert _check_readable(folders[0]) >= 1
        (folders[0] / "NOTES.md").write_text("the user's, beside the session's files")
        fresh = Store(store_dir).open_session(keep_crashed=0)  # cleans the killed session: its files only
        assert [p.name for p in folders[0].iterdir()] == ["NOTES.md"]
        (folders[0] / "NOTES.md").unlink()
        folders[0].rmdir()
        fresh.close()
        Store(store_dir).clean(keep_crashed=0)
