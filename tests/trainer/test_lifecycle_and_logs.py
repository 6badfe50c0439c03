"""Logs, prints, runtime stats and the failure lifecycle reach subscribers."""

from __future__ import annotations

import logging

import pytest

from onthefly import Trainer
from onthefly.demos.boring import boring_setup
from onthefly.v1 import control_pb2, telemetry_pb2


def _events(run, *kinds):
    return [e for f in run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(kinds=list(kinds)))
            for e in f.events]


def test_user_logging_and_prints_are_streamed(live_run):
    model, opt, loss, loader = boring_setup(n=32)
    user_log = logging.getLogger("user.training")

    def step_fn(model, batch, loss_fn):
        x, y = batch
        user_log.warning("batch of %d", len(y))
        print("hello from the step")
        return model(x), y

    run = live_run(Trainer("t", "logs", max_steps=2, port=0, start_paused=True, capture_prints=True, verbose=False),
                   model, opt, loss, loader, step_fn=step_fn)
    run.client.control.Resume(control_pb2.ResumeRequest())
    logs = _events(run, telemetry_pb2.EVENT_KIND_LOG)
    run.join()
    warnings = [e.log for e in logs if e.log.logger == "user.training"]
    prints = [e.log for e in logs if e.log.logger == "stdout"]
    assert [w.message for w in warnings] == ["batch of 16", "batch of 16"]
    assert warnings[0].level == telemetry_pb2.LOG_LEVEL_WARNING
    assert [p.message for p in prints] == ["hello from the step"] * 2
    import sys

    assert not type(sys.stdout).__name__ == "_Tee"  # prints are no longer captured after the run


def test_runtime_stats_are_sampled(live_run):
    model, opt, loss, loader = boring_setup(n=32)
    run = live_run(Trainer("t", "stats", max_steps=1, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader)
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_RUNTIME_STATS]))
    stats = next(e.runtime for f in stream for e in f.events)  # one arrives each second
    stream.cancel()
    run.client.control.Resume(control_pb2.ResumeRequest())
    run.join()
    assert stats.rss_bytes > 10 * 2**20 and stats.threads >= 3 and stats.cpu_percent >= 0
    assert list(stats.gpus) == []  # no GPU on this machine (nvidia-ml-py finds none)


def test_an_exception_fails_the_run_visibly_and_is_raised_to_the_caller(live_run):
    model, opt, loss, loader = boring_setup(n=64)
    calls = []

    def step_fn(model, batch, loss_fn):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("forward exploded at batch 3")
        x, y = batch
        return model(x), y

    run = live_run(Trainer("t", "fails", max_steps=10, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader, step_fn=step_fn)
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(kinds=[telemetry_pb2.EVENT_KIND_LIFECYCLE]))
    run.client.control.Resume(control_pb2.ResumeRequest())
    events = [e for f in stream for e in f.events]
    with pytest.raises(RuntimeError, match="forward exploded"):
        run.join()
    last = events[-1].lifecycle
    assert last.kind == telemetry_pb2.LIFECYCLE_KIND_FAILED
    assert last.message == "RuntimeError: forward exploded at batch 3"
    assert events[-1].step == 2


def test_the_trainers_own_stderr_line_is_information_not_a_warning(live_run):
    model, opt, loss, loader = boring_setup(n=32)

    def step_fn(model, batch, loss_fn):
        x, y = batch
        print("user trouble", file=sys.stderr)
        return model(x), y

    import sys

    run = live_run(Trainer("t", "logs", max_steps=1, port=0, start_paused=True, capture_prints=True, verbose=True),
                   model, opt, loss, loader, step_fn=step_fn)
    run.client.control.Resume(control_pb2.ResumeRequest())
    logs = [e.log for e in _events(run, telemetry_pb2.EVENT_KIND_LOG)]
    run.join()
    own = [log for log in logs if log.message.startswith("onthefly: run 't/logs' is live")]
    assert [(log.logger, log.level) for log in own] == [("onthefly", telemetry_pb2.LOG_LEVEL_INFO)]
    user = [log for log in logs if log.message == "user trouble"]
    assert [(log.logger, log.level) for log in user] == [("stderr", telemetry_pb2.LOG_LEVEL_WARNING)]
