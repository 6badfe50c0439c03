"""HistoryService against a real server on port 0: the whole metric history, downsampled on request,
continued by the telemetry stream from the seq it ends at; clear errors for bad queries."""

from __future__ import annotations

import grpc
import pytest

from onthefly import Trainer
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, history_pb2, history_pb2_grpc, telemetry_pb2
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from sessions.helpers import setup
from support import wait_until


def _start(live_run, **trainer_kwargs):
    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "hist", max_steps=10_000, seed=3, port=0, start_paused=True, verbose=False,
                      **trainer_kwargs)
    return live_run(trainer, model, opt, loss, loader, scheduler=sched)


def _step(run, n: int) -> int:
    def status():
        return run.client.control.GetStatus(control_pb2.GetStatusRequest()).status

    target = status().step + n
    run.client.control.Step(control_pb2.StepRequest(steps=n))
    wait_until(lambda: status().state == PAUSED and status().step == target, what=f"paused at step {target}")
    return target


def _history(run, **request) -> history_pb2.GetMetricHistoryResponse:
    stub = history_pb2_grpc.HistoryServiceStub(run.client.channel)
    return stub.GetMetricHistory(history_pb2.GetMetricHistoryRequest(**request))


def _events(run, after_seq: int, until):
    """Telemetry events after ``after_seq`` up to the first one ``until`` accepts."""
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(after_seq=after_seq), timeout=60)
    out = []
    try:
        for frame in stream:
            assert not frame.HasField("gap")
            out.extend(frame.events)
            if any(until(e) for e in frame.events):
                return out
    finally:
        stream.cancel()
    return out


def test_history_holds_every_step_and_the_stream_continues_where_it_ends(live_run, slow_pump):
    run = _start(live_run)
    _step(run, 40)
    # slow_pump: only a drain moves events; the history must include every step published so far.
    answer = _history(run, names=["loss", "lr", "samples_per_second"])
    series = {s.name: s for s in answer.series}
    assert list(series) == ["loss", "lr", "samples_per_second"]
    assert list(series["loss"].steps) == list(range(1, 41)) and not series["loss"].downsampled
    assert series["loss"].points_in_range == 40 and answer.total_steps == 40
    assert all(v > 0 for v in series["samples_per_second"].values)
    assert [(e.epoch, e.step) for e in answer.epoch_starts][:1] == [(0, 1)]

    published = _events(run, 0, lambda e: e.seq == answer.last_seq)
    losses = {e.step: e.step_metrics.loss for e in published if e.WhichOneof("payload") == "step_metrics"}
    assert losses == dict(zip(series["loss"].steps, series["loss"].values))  # the same numbers the stream sent

    _step(run, 2)
    after = _events(run, answer.last_seq, lambda e: e.WhichOneof("payload") == "step_metrics" and e.step == 42)
    assert after[0].seq == answer.last_seq + 1  # no gap, no overlap
    assert [e.step for e in after if e.WhichOneof("payload") == "step_metrics"] == [41, 42]


def test_downsampled_and_zoomed(live_run):
    run = _start(live_run)
    _step(run, 60)
    coarse = _history(run, names=["loss"], buckets=5).series[0]
    assert coarse.downsampled and len(coarse.steps) <= 12 and coarse.points_in_range == 60
    assert coarse.steps[0] == 1 and coarse.steps[-1] == 60
    full = _history(run, names=["loss"]).series[0]
    assert (max(coarse.values), min(coarse.values)) == (max(full.values), min(full.values))  # peaks survive
    zoom = _history(run, names=["loss"], start_step=20, end_step=29, buckets=100).series[0]
    assert list(zoom.steps) == list(range(20, 30)) and not zoom.downsampled


@pytest.mark.parametrize("request_fields, fix", [
    ({"start_step": 30, "end_step": 10}, "swap them"),
    ({"buckets": 1_000_000}, "chart's width"),
])
def test_bad_queries_are_invalid_argument(live_run, request_fields, fix):
    run = _start(live_run)
    with pytest.raises(grpc.RpcError) as err:
        _history(run, **request_fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fix in err.value.details()


def test_a_run_without_a_session_says_so(live_run):
    run = _start(live_run, hooks=[Sessions(enabled=False)])
    with pytest.raises(grpc.RpcError) as err:
        _history(run)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "disabled" in err.value.details()
