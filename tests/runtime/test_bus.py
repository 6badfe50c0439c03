from __future__ import annotations

import time

from onthefly.runtime.bus import EventBus
from onthefly.runtime.events import Event, EventKind, LogRecord


def _event(i: int) -> Event:
    return Event(EventKind.LOG, i, 0, time.time(), LogRecord(20, "t", str(i)))


def _read_all(bus: EventBus, cursor: int = 1):
    events, gaps = [], []
    while True:
        result = bus.read(cursor, timeout=1.0)
        events += result.events
        if result.gap:
            gaps.append(result.gap)
        cursor = result.next_seq
        if result.closed:
            return events, gaps


def test_sequence_numbers_are_contiguous_and_ordered():
    bus = EventBus()
    for i in range(1000):
        bus.publish(_event(i))
    bus.close()
    events, gaps = _read_all(bus)
    assert [e.seq for e in events] == list(range(1, 1001))
    assert [e.payload.message for e in events] == [str(i) for i in range(1000)]
    assert gaps == []


def test_reader_behind_bounded_history_is_told_the_gap():
    bus = EventBus(history_events=100)
    for i in range(250):
        bus.publish(_event(i))
    bus.close()
    events, gaps = _read_all(bus, cursor=1)
    assert len(gaps) == 1 and (gaps[0].first_seq, gaps[0].last_seq) == (1, 150)
    assert "history" in gaps[0].reason
    assert [e.seq for e in events] == list(range(151, 251))


def test_full_publish_queue_drops_oldest_counts_and_reports_it():
    bus = EventBus(queue_events=10, coalesce_seconds=3600)  # the pump never runs on its own
    for i in range(25):
        bus.publish(_event(i))
    bus.close()  # drains what is left: the newest 10
    assert bus.dropped_at_source == 15
    events, gaps = _read_all(bus)
    assert [e.seq for e in events] == list(range(16, 26))
    assert [(g.first_seq, g.last_seq) for g in gaps] == [(1, 15)]
    assert "dropped at source" in gaps[0].reason


def test_history_is_bounded_by_bytes_too():
    import numpy as np

    from onthefly.runtime.events import SampleLosses

    bus = EventBus(history_bytes=100_000)
    for i in range(50):
        bus.publish(Event(EventKind.SAMPLE_LOSSES, i, 0, 0.0,
                          SampleLosses("train", np.arange(1000), np.zeros(1000, np.float32))))
    bus.close()
    assert bus.oldest_seq() > 40  # ~12 KB each: only the newest few fit in 100 KB


def test_publish_never_waits_for_a_reader_that_does_not_read():
    bus = EventBus(history_events=16)
    bus.subscribe()  # a subscriber that never reads
    start = time.perf_counter()
    for i in range(100_000):
        bus.publish(_event(i))
    elapsed = time.perf_counter() - start
    bus.close()
    assert bus.last_published_seq == 100_000
    assert elapsed < 30  # generous: this guards against blocking, not speed (see benchmarks/)


def test_an_unreadable_event_or_a_failing_observer_costs_one_event_not_the_stream(caplog):
    from onthefly.runtime.events import StepMetrics

    bus = EventBus(coalesce_seconds=3600)
    seen = []
    bus.observe(lambda events: 1 / 0)  # a broken observer
    bus.observe(lambda events: seen.extend(e.seq for e in events))
    bus.publish(_event(0))
    bus.publish(Event(EventKind.STEP_METRICS, 1, 0, 0.0, StepMetrics(object(), 0.1, None, 0.0, 1, 0.0, 0.0)))
    bus.publish(_event(2))
    bus.drain()
    bus.publish(_event(3))
    bus.close()
    events, gaps = _read_all(bus)
    assert [e.seq for e in events] == [1, 3, 4] and seen == [1, 3, 4]
    assert [(g.first_seq, g.last_seq) for g in gaps] == [(2, 2)] and bus.dropped_at_source == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("STEP_METRICS event could not be read" in w for w in warnings)
    assert sum("observer" in w for w in warnings) == 1  # reported once, not per batch
