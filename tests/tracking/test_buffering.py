"""Buffering: size and time triggers (arguments and environment variables), flush(), unbuffered mode, and a
bounded buffer with a visible policy when the writer falls behind."""

from __future__ import annotations

import threading
import warnings

import pytest

from onthefly.tracking import BufferFull, InvalidArgument
from onthefly.tracking.records import StreamKind
from onthefly.tracking.store import LocalStore
from onthefly.tracking.writer import Writer
from support import wait_until


def _stored_rows(dash, prefix="alice/proj/run-1", name="m") -> int:
    """Rows on disk, read by a separate store object (no flush of the experiment's buffer)."""
    try:
        return LocalStore(dash).read(prefix, StreamKind.METRIC, name)[1]
    except LookupError:
        return 0


def test_nothing_is_written_before_a_trigger_and_flush_forces_it(make_exp, dash):
    exp = make_exp(flush_interval=600, batch_size=1000)
    for i in range(7):
        exp.metrics("m").log(v=i)
    assert exp.writer_stats()["pending"] == 7 and _stored_rows(dash) == 0
    exp.flush()
    assert _stored_rows(dash) == 7 and exp.writer_stats()["pending"] == 0


def test_size_trigger(make_exp, dash):
    exp = make_exp(flush_interval=600, batch_size=10)
    for i in range(25):
        exp.metrics("m").log(v=i)
    wait_until(lambda: _stored_rows(dash) >= 20, timeout=10, what="size-triggered writes")


def test_time_trigger(make_exp, dash):
    exp = make_exp(flush_interval=0.05, batch_size=10_000)
    exp.metrics("m").log(v=1)
    wait_until(lambda: _stored_rows(dash) == 1, timeout=10, what="a time-triggered write")


def test_environment_variables_configure_the_writer_and_arguments_win(make_exp, dash, monkeypatch):
    monkeypatch.setenv("ONTHEFLY_FLUSH_INTERVAL", "600")
    monkeypatch.setenv("ONTHEFLY_BATCH_SIZE", "3")
    monkeypatch.setenv("ONTHEFLY_MAX_PENDING", "5000")
    exp = make_exp()
    stats = exp.writer_stats()
    assert (stats["flush_interval"], stats["batch_size"], stats["max_pending"]) == (600.0, 3, 5000)
    for i in range(4):
        exp.metrics("m").log(v=i)
    wait_until(lambda: _stored_rows(dash) >= 3, timeout=10, what="the env batch size to trigger a write")
    other = make_exp("alice/proj/run-2", batch_size=50)
    assert other.writer_stats()["batch_size"] == 50 and other.writer_stats()["flush_interval"] == 600.0
    monkeypatch.delenv("ONTHEFLY_BATCH_SIZE")
    monkeypatch.setenv("ML_DASH_LOG_BATCH_SIZE", "7")  # ML-Dash's names are read too
    assert make_exp("alice/proj/run-3").writer_stats()["batch_size"] == 7


@pytest.mark.parametrize("env, value, message", [
    ("ONTHEFLY_FLUSH_INTERVAL", "soon", "not a valid"),
    ("ONTHEFLY_BATCH_SIZE", "0", "batch_size must be >= 1"),
    ("ONTHEFLY_ON_FULL", "drop", "rows are never dropped silently"),
])
def test_bad_settings_are_refused_clearly(make_exp, monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(InvalidArgument, match=message):
        make_exp(start=False)


def test_unbuffered_mode_writes_before_each_call_returns(make_exp, dash):
    exp = make_exp(buffered=False, flush_interval=600)
    exp.metrics("m").log(v=1)
    exp.metrics("m").log(v=2)
    assert _stored_rows(dash) >= 1  # every call after the first writes what was pending
    exp.flush()
    assert _stored_rows(dash) == 2


class GatedStore(LocalStore):
    """A store whose appends wait for a gate: a writer that has fallen behind."""

    def __init__(self, root) -> None:
        super().__init__(root, durable=False)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(30)
        return super().append(*args, **kwargs)


def test_full_buffer_raises_when_asked_and_keeps_what_was_accepted(make_exp, dash):
    store = GatedStore(dash)
    exp = make_exp(backend=store, batch_size=5, max_pending=20, on_full="raise", flush_interval=600)
    accepted, refusal = 0, None
    for i in range(100):
        try:
            exp.metrics("m").log(v=i)
            accepted += 1
        except BufferFull as exc:
            refusal = exc
            break
        if i == 5:
            assert store.entered.wait(10)  # the writer took a batch and is stuck in the store
    assert refusal is not None and "max_pending=20" in str(refusal) and "was not buffered" in str(refusal)
    assert exp.writer_stats()["pending"] <= 20  # bounded
    store.gate.set()
    exp.flush()
    assert exp.metrics("m").read()["totalDataPoints"] == accepted


def test_full_buffer_blocks_visibly_by_default(make_exp, dash):
    store = GatedStore(dash)
    exp = make_exp(backend=store, batch_size=5, max_pending=20, flush_interval=600)
    opener = threading.Thread(target=lambda: (wait_until(lambda: exp.writer_stats()["blocked_calls"] >= 1,
                                                         timeout=30, what="a blocked call"), store.gate.set()))
    opener.start()
    with pytest.warns(RuntimeWarning, match=r"fell \d+ items behind.*on_full='block'") as caught:
        for i in range(60):
            exp.metrics("m").log(v=i)
            assert exp.writer_stats()["pending"] <= 20
    opener.join(30)
    assert [w.filename for w in caught if "fell" in str(w.message)] == [__file__]  # points at the logging call
    stats = exp.writer_stats()
    assert stats["blocked_calls"] >= 1 and stats["blocked_seconds"] > 0
    assert exp.metrics("m").read()["totalDataPoints"] == 60  # nothing dropped


def test_defaults_are_five_seconds_and_a_hundred_items(make_exp):
    stats = make_exp().writer_stats()
    assert (stats["flush_interval"], stats["batch_size"], stats["on_full"]) == (5.0, 100, "block")
    assert stats["max_pending"] >= 100_000  # bounded, with room for a burst


def test_a_burst_waits_for_the_gap_between_size_triggered_writes_but_flush_does_not(make_exp, dash, monkeypatch):
    monkeypatch.setattr(Writer, "burst_gap", 600.0)
    exp = make_exp(flush_interval=600, batch_size=10)
    for i in range(11):
        exp.metrics("m").log(v=i)  # the 11th call triggers the first write: no write before it, so no gap
    wait_until(lambda: exp.writer_stats()["writes"] == 1, timeout=10, what="the first size-triggered write")
    for i in range(30):
        exp.metrics("m").log(v=i)  # triggers the next write, which waits for the gap
    stats = exp.writer_stats()
    assert stats["writes"] == 1 and stats["pending"] >= 30
    flusher = threading.Thread(target=exp.flush)
    flusher.start()
    flusher.join(60)  # far less than the gap
    assert not flusher.is_alive(), "flush() waited for the burst gap"
    assert exp.writer_stats()["pending"] == 0 and _stored_rows(dash) == 41


def test_the_time_trigger_does_not_wait_for_the_gap(make_exp, dash, monkeypatch):
    monkeypatch.setattr(Writer, "burst_gap", 600.0)
    exp = make_exp(flush_interval=0.1, batch_size=10)
    for i in range(11):
        exp.metrics("m").log(v=i)
    wait_until(lambda: exp.writer_stats()["writes"] >= 1, timeout=10, what="the first size-triggered write")
    for i in range(30):
        exp.metrics("m").log(v=i)
    wait_until(lambda: _stored_rows(dash) == 41, timeout=10, what="a time-triggered write")


def test_blocked_calls_do_not_wait_for_the_gap(make_exp, dash, monkeypatch):
    monkeypatch.setattr(Writer, "burst_gap", 600.0)
    exp = make_exp(batch_size=5, max_pending=20, flush_interval=600)

    def burst():
        for i in range(200):
            exp.metrics("m").log(v=i)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the "fell behind" warning
        logger = threading.Thread(target=burst)
        logger.start()
        logger.join(60)
    assert not logger.is_alive(), "blocked logging calls waited for the burst gap"
    assert exp.writer_stats()["blocked_calls"] >= 1
    assert exp.metrics("m").read()["totalDataPoints"] == 200


@pytest.mark.parametrize("style", ["keywords", "dict"])
def test_the_size_trigger_fires_on_the_batch_sizeth_row(make_exp, dash, style):
    exp = make_exp(flush_interval=600, batch_size=16)
    for i in range(16):  # exactly one batch: written without waiting for the 600 s timer
        if style == "keywords":
            exp.metrics("m").log(v=float(i), step=i)  # the C hot path's chunks, where built
        else:
            exp.metrics("m").log({"v": float(i), "step": i})
    # the trigger runs before its row is stored, so a write it starts may take the 15 rows before it
    wait_until(lambda: _stored_rows(dash) >= 15, timeout=10, what="the 16th row to trigger a write")


def test_the_size_trigger_counts_rows_not_chunks(make_exp, dash):
    """Four metrics logged in turn fill four chunks (C hot path) of four rows each: 16 rows, one batch."""
    exp = make_exp(flush_interval=600, batch_size=16)
    metrics = [exp.metrics(name) for name in ("a", "b", "c", "d")]
    for i in range(4):
        for m in metrics:
            m.log(v=float(i), step=i)
    wait_until(lambda: sum(_stored_rows(dash, name=n) for n in "abcd") >= 15, timeout=10,
               what="16 rows in four partly filled chunks to trigger a write")


def test_other_streams_count_the_rows_of_open_chunks(make_exp, dash):
    """Rows waiting in a metric's chunk count for a track's size check too (the Python paths)."""
    exp = make_exp(flush_interval=600, batch_size=16)
    for i in range(10):
        exp.metrics("m").log(v=float(i), step=i)
    for i in range(6):
        exp.tracks("t").append(x=float(i))
    wait_until(lambda: _stored_rows(dash) == 10, timeout=10, what="10 metric rows and 6 track rows to trigger a write")


def test_the_bound_counts_rows_in_chunks(make_exp, dash):
    store = GatedStore(dash)
    exp = make_exp(backend=store, batch_size=5, max_pending=20, on_full="raise", flush_interval=600)
    metrics = [exp.metrics(name) for name in ("a", "b", "c", "d")]
    for m in metrics + metrics[:1]:
        m.log(v=0.0)  # five rows: the first write; the writer takes them and waits in the store
    assert store.entered.wait(10)
    accepted = 5
    with pytest.raises(BufferFull):
        for i in range(1, 100):
            for m in metrics:
                m.log(v=float(i))  # four chunks at a time, none of them full (a chunk holds 5 rows)
                accepted += 1
                assert exp.writer_stats()["pending"] <= 20  # rows, not chunks: 20 at most
    store.gate.set()
    exp.flush()
    assert sum(exp.metrics(n).read()["totalDataPoints"] for n in "abcd") == accepted

