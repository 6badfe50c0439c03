"""The run's one throughput figure: training samples per wall-clock second over the last
``WINDOW_SECONDS`` of training (pauses and evaluation passes excluded).

Each step's own ``samples / step_seconds`` is not it: on an accelerator the training thread measures
only the time to queue the step's work, and the time between steps (hooks, logging) is left out, so it
read 50k samples/s where counting steps said 20k. The wall clock between step ends counts everything
the run spends per step. The bus's pump derives it once per step (``Run``), and the step's event, the
run status, the dashboard's chart and the throughput health check all carry that same number.
"""

from __future__ import annotations

import collections

WINDOW_SECONDS = 10.0
MAX_STEPS = 4096  # bounds memory for very fast steps; the window then spans these steps


class ThroughputWindow:
    """Samples per wall second over the steps that ended in the last ``window_seconds``. Not thread-safe:
    the pump thread feeds it."""

    def __init__(self, window_seconds: float = WINDOW_SECONDS, max_steps: int = MAX_STEPS) -> None:
        self.window_seconds = window_seconds
        self._steps: collections.deque[tuple[float, int]] = collections.deque(maxlen=max_steps)
        self._samples = 0
        self._start = 0.0  # wall time the window's first step began

    def step(self, end_time: float, samples: int, step_seconds: float) -> float:
        """Record a step that ended at ``end_time`` (wall seconds) with ``samples``; return the rate."""
        steps = self._steps
        if not steps:
            # The first step after a start, pause or evaluation: its own duration is all the clock says.
            self._start = end_time - max(step_seconds, 0.0)
        elif len(steps) == steps.maxlen:
            self._drop_oldest()
        steps.append((end_time, samples))
        self._samples += samples
        while len(steps) > 1 and steps[0][0] < end_time - self.window_seconds:
            self._drop_oldest()
        return self.rate()

    def _drop_oldest(self) -> None:
        end, samples = self._steps.popleft()
        self._samples -= samples
        self._start = end  # the next step began (at the latest) when this one ended

    def rate(self) -> float:
        """Samples per wall second over the window; 0.0 before the first step."""
        if not self._steps:
            return 0.0
        elapsed = self._steps[-1][0] - self._start
        return self._samples / elapsed if elapsed > 0 else 0.0

    def interrupt(self) -> None:
        """The loop stopped (a pause, an evaluation pass): the next step starts a new window."""
        self._steps.clear()
        self._samples = 0
