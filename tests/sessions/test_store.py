"""The store: manifest-only cleaning, live sessions left alone, atomic writes, default location."""

from __future__ import annotations

import json
import os

import pytest

from onthefly.runtime.errors import InvalidArgument
from onthefly.sessions.store import Store, default_store_dir


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_new_session_cleans_only_what_the_previous_one_wrote(tmp_path):
    store = Store(tmp_path / "s")
    old = store.open_session()
    old.write_json("session.json", {"a": 1})
    old.write_bytes("checkpoints/c1/tensors.pt", b"x" * 10)
    old.write_bytes("history/h/events-000001.jsonl", b"{}\n")
    (old.path / "checkpoints" / "notes.txt").write_text("mine")  # the user's file beside ours
    (old.path / "keep.md").write_text("also mine")
    old.mark_ended(ok=True)
    old.close()  # the process "ends": its lock is released

    new = store.open_session()
    assert new.session_id != old.session_id
    assert _files(old.path) == ["checkpoints/notes.txt", "keep.md"]
    assert (old.path / "checkpoints" / "notes.txt").read_text() == "mine"
    assert not (old.path / "history").exists()  # folders we made and emptied are gone
    new.close()


def test_a_session_whose_process_lives_is_never_cleaned(tmp_path):
    store = Store(tmp_path / "s")
    live = store.open_session()
    live.write_bytes("checkpoints/c/tensors.pt", b"y")
    other = store.open_session()
    assert (live.path / "checkpoints/c/tensors.pt").exists()
    assert store.clean() == []
    live.close()
    assert store.clean(exclude={other.session_id}, keep_crashed=0) == [live.session_id]
    assert not live.path.exists()


def test_a_folder_without_manifest_is_never_touched(tmp_path):
    store = Store(tmp_path / "s")
    stray = store.sessions_dir / "not-a-session"
    stray.mkdir(parents=True)
    (stray / "lock").write_text("")
    (stray / "data.bin").write_bytes(b"1")
    store.open_session().close()
    assert sorted(p.name for p in stray.iterdir()) == ["data.bin", "lock"]


def test_paths_that_escape_the_session_folder_are_refused(tmp_path):
    folder = Store(tmp_path / "s").open_session()
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", ""):
        with pytest.raises(InvalidArgument):
            folder.write_bytes(bad, b"no")
    with pytest.raises(InvalidArgument, match="not written by this session"):
        folder.remove("never-written.txt")


def test_writes_are_atomic_and_listed_before_they_exist(tmp_path):
    folder = Store(tmp_path / "s").open_session()
    with pytest.raises(RuntimeError):
        with folder.writer("big.bin") as f:
            f.write(b"half")
            raise RuntimeError("crash mid-write")
    assert not (folder.path / "big.bin").exists() and not (folder.path / "big.bin.partial").exists()
    manifest = json.loads((folder.path / "manifest.json").read_text())
    assert "big.bin" in manifest["files"]  # listed first, so a later clean knows about it
    folder.write_bytes("big.bin", b"whole")
    assert (folder.path / "big.bin").read_bytes() == b"whole"


def test_default_store_is_dot_onthefly_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ONTHEFLY_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_store_dir() == tmp_path / ".onthefly"
    monkeypatch.setenv("ONTHEFLY_STORE", str(tmp_path / "elsewhere"))
    assert Store().root == (tmp_path / "elsewhere").resolve()
    assert os.fspath(default_store_dir()).endswith("elsewhere")
