"""The run's one throughput figure: samples per wall second over a window, pauses excluded; the same
number in each step's event, the run's status and the throughput health check."""

from __future__ import annotations

import pytest

from onthefly.runtime.throughput import ThroughputWindow


def test_wall_clock_between_step_ends_counts_not_the_steps_own_timer():
    w = ThroughputWindow(window_seconds=10)
    # Each step's own timer says 0.01 s (queued work), but steps end 0.1 s apart: 10 samples / 0.1 s.
    assert w.step(100.0, 10, 0.01) == pytest.approx(1000)  # the first step: its own duration is all there is
    for i in range(1, 20):
        rate = w.step(100.0 + 0.1 * i, 10, 0.01)
    assert rate == pytest.approx(10 * 20 / (1.9 + 0.01))


def test_the_window_slides_and_a_pause_starts_a_new_one():
    w = ThroughputWindow(window_seconds=1.0)
    for i in range(10):
        w.step(float(i), 100, 1.0)  # 100 samples/s
    for i in range(10, 20):
        rate = w.step(10.0 + (i - 10) * 0.5, 100, 0.5)  # now 200 samples/s
    assert rate == pytest.approx(200)  # the slow steps left the 1 s window
    w.interrupt()
    assert w.rate() == 0.0
    assert w.step(1000.0, 64, 0.25) == pytest.approx(256)  # the pause's 985 s are not counted


def test_bounded_memory_for_very_fast_steps():
    w = ThroughputWindow(window_seconds=10, max_steps=8)
    for i in range(100):
        rate = w.step(i * 0.001, 1, 0.001)
    assert rate == pytest.approx(1000)
