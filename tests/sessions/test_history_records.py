"""History event records: every payload kind becomes the same JSON as a deep ``dataclasses.asdict``."""

from __future__ import annotations

import dataclasses
import enum
import json

import numpy as np
import pytest

from onthefly.runtime import events as ev
from onthefly.sessions.history import event_record


def _reference(event: ev.Event) -> dict:
    """What the record held when it was built with dataclasses.asdict (enums by lower-case name)."""
    def plain(value):
        if isinstance(value, enum.Enum):
            return value.name.lower()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    body = dataclasses.asdict(event.payload)
    return {"seq": event.seq, "kind": event.kind.name.lower(), "step": event.step, "epoch": event.epoch,
            "time": event.time, **{k: plain(v) for k, v in body.items()}}


PAYLOADS = [
    (ev.EventKind.STEP_METRICS, ev.StepMetrics(0.5, 0.01, None, 1000.0, 128, 0.002, 0.0001, {"acc": np.float32(0.75)})),
    (ev.EventKind.RUNTIME_STATS, ev.RuntimeStats(12.5, 1 << 30, [ev.GpuStats(0, "gpu", 50.0, 1, 2, 3)], 4, 7)),
    (ev.EventKind.LIFECYCLE, ev.Lifecycle(ev.LifecycleKind.STARTED, ev.RunState.RUNNING, "go",
                                          ev.RunIdentity("p", "r", "id", 42))),
    (ev.EventKind.EVAL_RESULT, ev.EvalResult("val", 0.25, 64, {"accuracy": 0.5}, 0.1, "schedule")),
]


@pytest.mark.parametrize("kind, payload", PAYLOADS, ids=[k.name for k, _ in PAYLOADS])
def test_records_equal_the_deep_asdict_form(kind, payload):
    event = ev.Event(kind, 9, 2, 123.5, payload)
    event.seq = 17
    record = event_record(event)
    assert record == _reference(event)
    json.dumps(record, allow_nan=True)  # JSON-ready


def test_a_record_does_not_share_mutable_values_with_the_payload():
    payload = ev.EvalResult("val", 0.25, 64, {"accuracy": 0.5}, 0.1, "schedule")
    record = event_record(ev.Event(ev.EventKind.EVAL_RESULT, 1, 0, 0.0, payload))
    payload.metrics["accuracy"] = 0.9
    assert record["metrics"] == {"accuracy": 0.5}
