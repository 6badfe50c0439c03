"""A full disk: flush() and close() raise when rows were not stored, the experiment is recorded FAILED
with the reason, rows waiting in memory are written once space returns, and drops are counted.
A real small tmpfs (mounting it needs root; skipped elsewhere)."""

from __future__ import annotations

import pytest

from onthefly.tracking import Experiment, Status
from onthefly.tracking.errors import StorageFailed
from onthefly.tracking.records import StreamKind
from onthefly.tracking.store import LocalStore
from support import fill_disk, mount_small_disk, unmount_small_disk

PREFIX = "alice/proj/full"


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk"
    if not mount_small_disk(path, "4m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        unmount_small_disk(path)


def _rows(root, name="train") -> int:
    return LocalStore(root).read(PREFIX, StreamKind.METRIC, name)[1]


def test_rows_the_disk_refuses_are_kept_retried_and_flush_says_so(disk):
    root = disk / "dash"
    exp = Experiment(prefix=PREFIX, dash_root=root, durable=False, flush_interval=600, batch_size=1000)
    exp.run.start()
    for i in range(500):
        exp.metrics("train").log(loss=float(i), step=i)
    exp.flush()
    fill_disk(disk)
    for i in range(500, 20_500):
        exp.metrics("train").log(loss=float(i), step=i)
    with pytest.raises(StorageFailed, match="not stored yet"):
        exp.flush()
    assert exp.writer_stats()["held_rows"] > 0
    (disk / "filler").unlink()  # space returns
    exp.flush()  # the held rows go in first, then nothing is missing
    assert exp.writer_stats()["held_rows"] == 0
    exp.run.complete()
    assert _rows(root) == 20_500
    assert LocalStore(root).get_experiment(PREFIX).status is Status.COMPLETED


def test_closing_on_a_full_disk_raises_and_records_failed(disk):
    root = disk / "dash"
    exp = Experiment(prefix=PREFIX, dash_root=root, durable=False, flush_interval=600, batch_size=1000,
                     max_pending=5_000)
    exp.run.start()
    exp.metrics("train").log(loss=0.0, step=0)
    exp.flush()
    filler = disk / "filler"
    fill_disk(disk)
    for i in range(1, 30_001):
        exp.metrics("train").log(loss=float(i), step=i)
    with pytest.raises(StorageFailed):
        exp.flush()
    # Free just enough for the status record, not for the rows.
    with open(filler, "r+b") as f:
        f.truncate(filler.stat().st_size - (64 << 10))
    with pytest.raises(StorageFailed) as caught:
        exp.run.complete()
    assert "dropped" in str(caught.value)
    record = LocalStore(root).get_experiment(PREFIX)
    assert record.status is Status.FAILED and "rows" in record.history[-1].get("error", "") + str(record.error)
    stats = record.writer if hasattr(record, "writer") else {}
    assert stats == {} or stats.get("dropped_rows", 0) > 0
