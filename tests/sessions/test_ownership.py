"""Cleaning the store: a folder is a session's only if its own manifest says so, and a killed run's
checkpoints are kept (the newest ``keep_crashed`` sessions) and listed by `onthefly crashed`."""

from __future__ import annotations

import shutil

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.sessions import Sessions
from onthefly.sessions.store import Store
from sessions.helpers import setup


def _fit(store, steps=3, **kw):
    model, opt, loss, loader, sched, _ = setup()
    sessions = Sessions(store=store, every_n_steps=1, **kw)
    Trainer("t", "own", max_steps=steps, seed=1, serve=False, verbose=False, hooks=[sessions]).fit(
        model, opt, loss, loader)
    return sessions.session.folder


def test_a_users_copy_of_a_session_folder_survives_the_next_fit(tmp_path):
    store = tmp_path / "store"
    finished = _fit(store)
    copy = finished.path.parent / "my-copy"
    shutil.copytree(finished.path, copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    _fit(store)  # a new session cleans the store: the copy is not a session (its manifest names another)
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


def test_a_killed_runs_checkpoints_are_kept_and_listed(tmp_path, capsys):
    store = Store(tmp_path / "store")
    killed = []
    for _ in range(3):
        folder = store.open_session(keep_crashed=2)
        folder.write_bytes("checkpoints/c1/state.json", b"{}")
        folder.write_bytes("checkpoints/c1/tensors.pt", b"x")
        folder.close()  # the process is gone and the run never ended: killed
        killed.append(folder.path)
    store.open_session(keep_crashed=2).close()
    assert not killed[0].exists() and killed[1].exists() and killed[2].exists()  # keep_crashed=2
    assert (killed[1] / "checkpoints/c1/tensors.pt").read_bytes() == b"x"
    assert main(["crashed", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert killed[1].name in out and killed[2].name in out and "c1" in out
