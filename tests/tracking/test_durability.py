"""durable=True: a failed fsync is a failure the caller cannot miss. flush() and close() raise
StorageFailed naming it, and the experiment is recorded FAILED with the reason (as for rows the store did
not take). A faked os.fsync fails for the journals only, the way a failing disk would."""

from __future__ import annotations

import errno
import os

import pytest

from onthefly.tracking import Experiment, Status
from onthefly.tracking.errors import StorageFailed
from onthefly.tracking.store import LocalStore

PREFIX = "alice/proj/durable"


@pytest.fixture
def failing_fsync(monkeypatch):
    """arm() makes every later fsync of a journal file (``*.arrows``) raise EIO; other files sync normally."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell journals from other files")
    real = os.fsync
    armed = []

    def fsync(fd):
        if armed and os.readlink(f"/proc/self/fd/{fd}").endswith(".arrows"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return lambda: armed.append(True)


def _start(dash) -> Experiment:
    exp = Experiment(prefix=PREFIX, dash_root=dash, durable=True, flush_interval=600, batch_size=1000)
    exp.run.start()
    return exp


def test_flush_raises_when_fsync_fails_and_close_records_failed(dash, failing_fsync):
    exp = _start(dash)
    for i in range(10):
        exp.metrics("train").log(loss=float(i), step=i)
    exp.flush()  # fsync works: nothing to report
    failing_fsync()
    for i in range(10, 20):
        exp.metrics("train").log(loss=float(i), step=i)
    with pytest.raises(StorageFailed, match=r"10 rows were written but may not survive.*fsync failed.*Input/output"):
        exp.flush()
    assert exp.writer_stats()["unsynced_rows"] == 10
    exp.run.complete()  # already raised by flush(): the record still says FAILED, with why
    record = LocalStore(dash).get_experiment(PREFIX)
    assert record.status is Status.FAILED and "fsync failed" in str(record.error)


def test_close_raises_when_its_final_fsync_fails(dash, failing_fsync):
    exp = _start(dash)
    for i in range(10):
        exp.metrics("train").log(loss=float(i), step=i)
    failing_fsync()
    with pytest.raises(StorageFailed, match="fsync failed"):
        exp.run.complete()
    record = LocalStore(dash).get_experiment(PREFIX)
    assert record.status is Status.FAILED and "fsync failed" in str(record.error)
