"""``_ts``, as in ML-Dash: a row's timestamp in seconds, or ``-1`` to reuse the timestamp of this thread's
previous metric or track call (so a track entry can line up with the metric logged just before it).

The C metric path records its call times in a C thread-local (``_hotpath.last_time``); Python calls
record here. Whichever was recorded later is "the previous call".
"""

from __future__ import annotations

import datetime as _dt
import threading
from time import time as _time

from onthefly.tracking.errors import ConfigurationError

_local = threading.local()
_c_last_time = None  # set by hotpath when the C extension is in use


def note(ts: float, at: float) -> None:
    """Record this thread's latest call: its timestamp ``ts``, made at wall time ``at``."""
    _local.last = (ts, at)


def note_field(value, at: float) -> None:
    """Record a row whose time came in a ``timestamp`` field (the writer checks it; a value that is not a
    time counts as the call time here)."""
    try:
        ts = resolve(value, "timestamp")
    except ConfigurationError:
        ts = None
    note(at if ts is None else ts, at)


def inherited(since: float = 0.0) -> float | None:
    """The timestamp of this thread's previous metric or track call made at or after wall time ``since``
    (the experiment's start: calls for earlier experiments do not count), or None."""
    mine = getattr(_local, "last", None)
    c = _c_last_time() if _c_last_time is not None else 0.0
    if mine is not None and mine[1] >= c:
        return mine[0] if mine[1] >= since else None
    return c if c and c >= since else None


def resolve(value, what: str, since: float = 0.0) -> float | None:
    """The seconds an explicit ``_ts`` stands for (None for ``-1`` before any call); ConfigurationError
    for anything that is not a number of seconds or a datetime."""
    if type(value) in (int, float) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        if value == -1:
            return inherited(since)
        return float(value)
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    raise ConfigurationError(f"{what}: timestamp '_ts' must be numeric (seconds) or -1 (this thread's previous "
                             f"timestamp), got {type(value).__name__} {value!r}")


def metric_ts(value, since: float = 0.0) -> float:
    """A metric row's ``_ts``: -1 with no previous call in this thread raises ConfigurationError."""
    ts = resolve(value, "metrics().log()", since)
    if ts is None:
        raise ConfigurationError("metrics().log(_ts=-1): there is no previous metric or track call in this "
                                 "thread to take the timestamp from; pass seconds or leave _ts out")
    note(ts, _time())
    return ts
