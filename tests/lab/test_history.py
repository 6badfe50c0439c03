"""The lab's per-sample history: keyed by base index through random_split, written off the training
thread in Parquet parts, readable while the run goes on, carried by session export and import."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import Lab
from onthefly.runtime.errors import InvalidArgument
from onthefly.sessions import Sessions


def _fit(tmp_path, lab: Lab, epochs: int = 3, seed: int = 0, n: int = 200, **fit):
    torch.manual_seed(seed)
    base = boring_dataset(n, seed=seed)
    train, val = random_split(base, [0.7, 0.3], generator=torch.Generator().manual_seed(seed))
    model = BoringModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = Trainer("t", "hist", max_epochs=epochs, seed=seed, serve=False, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store"), lab])
    trainer.fit(model, opt, torch.nn.CrossEntropyLoss(), DataLoader(train, batch_size=16, shuffle=True),
                val_loader=DataLoader(val, batch_size=32), **fit)
    return trainer, train, val


def test_history_is_keyed_by_base_index_through_random_split(tmp_path):
    lab = Lab(part_rows=100)  # several parts per epoch, so reads cross part files and memory
    trainer, train, val = _fit(tmp_path, lab, epochs=3)
    history = lab.history
    table = history.table("train")
    assert table.num_rows == 3 * len(train)
    seen = np.unique(table.column("index").to_numpy())
    assert seen.tolist() == sorted(train.indices)  # base indices, not positions in the subset
    history.flush()  # parts handed over at fit end are on disk once this returns
    assert len(history.parts()) >= 6
    i = train.indices[5]
    traj = history.trajectory(i)
    assert len(traj.splits["train"]) == 3  # once per epoch
    assert np.all(np.diff(traj.splits["train"].step) > 0)
    assert traj.splits["train"].epoch.tolist() == [0, 1, 2]
    assert len(traj.splits["val"]) == 0  # a train sample is never in val
    j = val.indices[3]
    vt = history.trajectory(j)
    assert len(vt.splits["val"]) == 3 and len(vt.splits["train"]) == 0
    # a step's losses are the batch trained at that step, under base indices of the train subset
    step = int(traj.splits["train"].step[1])
    at = history.step_losses(step)
    assert i in at.index.tolist() and set(at.index.tolist()) <= set(train.indices)
    k = at.index.tolist().index(i)
    assert at.loss[k] == traj.splits["train"].loss[1]


def test_history_answers_while_the_run_goes_on_and_in_memory_rows_count(tmp_path):
    lab = Lab(part_rows=10_000)  # nothing reaches a part before the end: every answer comes from memory
    seen = {}

    class Probe(Lab.__mro__[1]):  # a RunHook that queries the history mid-run
        def on_epoch_start(self, ctx):
            if ctx.epoch == 2:
                ctx.run.bus.drain()
                seen["rows"] = lab.history.table("train").num_rows
                seen["parts"] = len(lab.history.parts())

    torch.manual_seed(0)
    data = boring_dataset(64)
    model = BoringModel()
    trainer = Trainer("t", "live", max_epochs=3, serve=False, verbose=False,
                      hooks=[Sessions(store=tmp_path / "s"), lab, Probe()])
    trainer.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(),
                DataLoader(data, batch_size=8, shuffle=True))
    assert seen == {"rows": 128, "parts": 0}
    assert lab.history.table("train").num_rows == 192  # the last rows, handed to the writer at fit end
    lab.history.flush()  # waits until they are on disk
    assert len(lab.history.parts()) == 1 and lab.history.table("train").num_rows == 192


def test_history_travels_in_a_session_export_and_comes_back_on_import(tmp_path):
    from onthefly.sessions import export_session

    lab = Lab(part_rows=50)
    trainer, train, _ = _fit(tmp_path, lab, epochs=2)
    bundle = tmp_path / "run.onthefly"
    export_session(trainer, bundle)
    before = lab.history.table("train")
    lab2 = Lab(part_rows=50)
    _fit(tmp_path, lab2, epochs=3, resume_from=bundle)
    after = lab2.history.table("train")
    # the imported history (2 epochs) plus the third epoch trained after resuming
    assert after.num_rows == before.num_rows + len(train)
    i = train.indices[0]
    assert lab2.history.trajectory(i).splits["train"].epoch.tolist() == [0, 1, 2]


def test_bad_queries_are_clear(tmp_path):
    lab = Lab(part_rows=100)
    _fit(tmp_path, lab, epochs=1)
    with pytest.raises(InvalidArgument, match="unknown split"):
        lab.history.table("training")
    with pytest.raises(InvalidArgument, match="index >= 0"):
        lab.history.trajectory(-3)
    assert len(lab.history.trajectory(10**9).splits["train"]) == 0


def test_a_finished_fit_leaves_no_history_writer_thread_and_export_still_writes(tmp_path):
    """A process that fits many times (a notebook, a test suite) must not keep a writer thread per fit;
    rows that reach the history after the fit are written by the flush that asks for them."""
    import threading

    from support import wait_until

    def writers():
        return [t for t in threading.enumerate() if t.name == "onthefly-lab-history"]

    before = set(writers())  # an earlier test's writer may still be ending: only this fit's must end
    lab = Lab(part_rows=10_000)
    _fit(tmp_path / "a", lab, epochs=2)
    wait_until(lambda: not set(writers()) - before, timeout=60, interval=0.05, what="the writer thread to end")
    history = lab.history
    history.flush()
    assert history.table("train").num_rows == 2 * 140
    assert history.parts()  # on disk, written after the writer thread had ended


def test_a_forked_child_does_not_inherit_the_history_writers(tmp_path):
    """A child forked from the training process (a library's process pool) has none of the writer threads:
    it must not wait for them at its exit, nor write parts into the parent's session."""
    import os

    from onthefly.lab import history as history_module

    lab = Lab(part_rows=100)
    _fit(tmp_path, lab, epochs=1)
    assert lab.history in set(history_module._LIVE)  # its writer is still there in this process
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        os._exit(0 if len(history_module._LIVE) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the forked child still lists the parent's histories"


def _refusing_lab_parts(monkeypatch):
    """The disk refuses the lab's part files (ENOSPC) while ``refuse["on"]``; everything else is written."""
    import errno

    from onthefly.sessions.store import SessionFolder

    refuse = {"on": True}
    real = SessionFolder.writer

    def writer(self, rel, *args, **kwargs):
        if refuse["on"] and "/lab-samples/" in rel:
            raise OSError(errno.ENOSPC, "No space left on device", rel)
        return real(self, rel, *args, **kwargs)

    monkeypatch.setattr(SessionFolder, "writer", writer)
    return refuse


def test_parts_the_disk_refuses_stay_readable_and_are_written_when_it_takes_them(tmp_path, monkeypatch, caplog):
    refuse = _refusing_lab_parts(monkeypatch)
    lab = Lab(part_rows=150)
    trainer, train, val = _fit(tmp_path, lab, epochs=2)
    history = lab.history
    history.flush()
    assert history.parts() == [] and "No space left" in history.error
    assert history.unwritten_rows == 2 * len(train) + 2 * len(val) and history.dropped_rows == 0
    assert history.table("train").num_rows == 2 * len(train)  # read from memory meanwhile
    with caplog.at_level(logging.WARNING, logger="onthefly"):
        with history.paused():  # an export goes on (it may be to another disk) and says what it lacks
            pass
    assert any(f"{history.unwritten_rows} rows of the lab's sample history are not on disk" in r.getMessage()
               for r in caplog.records)
    refuse["on"] = False
    history.flush()  # the next flush writes what was kept
    assert history.error == "" and history.unwritten_rows == 0 and history.parts()
    assert history.table("train").num_rows == 2 * len(train)  # written once, not twice
    assert history.table("val").num_rows == 2 * len(val)


def test_beyond_the_memory_bound_the_oldest_refused_rows_are_dropped_and_counted(tmp_path, monkeypatch):
    from onthefly.lab import history as history_module

    _refusing_lab_parts(monkeypatch)
    monkeypatch.setattr(history_module, "MAX_UNWRITTEN_PARTS", 1)
    lab = Lab(part_rows=50)
    trainer, train, val = _fit(tmp_path, lab, epochs=2)
    history = lab.history
    history.flush()
    assert 0 < history.unwritten_rows <= 50 and history.dropped_rows > 0
    assert history.unwritten_rows + history.dropped_rows == 2 * len(train) + 2 * len(val)
    kept = {split: history.table(split).num_rows for split in ("train", "val")}
    assert kept == {split: history.rows(split) for split in ("train", "val")}  # rows() counts what is left
