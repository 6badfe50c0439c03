"""Answer a metric-history query: the series asked for over a step range, downsampled to buckets.

Domain code (no protobuf): the HistoryService servicer parses a request, calls ``query_metrics`` and
converts what it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from onthefly.runtime.errors import InvalidArgument
from onthefly.sessions.downsample import min_max
from onthefly.sessions.history import History

DEFAULT_BUCKETS = 2000
MAX_BUCKETS = 100_000


@dataclasses.dataclass
class SeriesAnswer:
    name: str
    steps: np.ndarray
    values: np.ndarray
    points_in_range: int
    downsampled: bool


@dataclasses.dataclass
class MetricHistoryAnswer:
    series: list[SeriesAnswer]
    last_seq: int
    total_steps: int
    epoch_starts: list[tuple[int, int]]  # (epoch, first step)


def query_metrics(history: History, names: Sequence[str] = (), start_step: int = 0, end_step: int = 0,
                  buckets: int = 0) -> MetricHistoryAnswer:
    """Series ``names`` (all when empty) for steps in [start_step, end_step] (0 = open end), each at
    most ``2 * buckets + 2`` points; raises InvalidArgument for a range or resolution that cannot be met."""
    if start_step < 0 or end_step < 0:
        raise InvalidArgument("start_step and end_step must be 0 (open) or a step number, not negative")
    if end_step and end_step < start_step:
        raise InvalidArgument(f"end_step {end_step} is before start_step {start_step}; swap them")
    if buckets > MAX_BUCKETS:
        raise InvalidArgument(f"buckets {buckets} is above the limit of {MAX_BUCKETS}; ask for about the chart's width in pixels")
    buckets = buckets or DEFAULT_BUCKETS
    wanted = list(dict.fromkeys(n for n in names if n)) or None
    snapshot = history.metric_range(wanted, start_step or None, end_step or None)
    order = wanted if wanted is not None else sorted(snapshot.series)
    series = []
    for name in order:
        if name not in snapshot.series:
            continue
        steps, values = snapshot.series[name]
        finite = int(np.isfinite(values).sum())
        xs, ys = min_max(steps, values, buckets)
        series.append(SeriesAnswer(name, xs, ys, len(values), len(ys) < finite))
    return MetricHistoryAnswer(series, snapshot.last_seq, snapshot.total_steps, _epoch_starts(snapshot.steps, snapshot.epochs))


def _epoch_starts(steps: np.ndarray, epochs: np.ndarray) -> list[tuple[int, int]]:
    if not len(epochs):
        return []
    first = np.flatnonzero(np.r_[True, epochs[1:] != epochs[:-1]])
    return [(int(epochs[i]), int(steps[i])) for i in first]
