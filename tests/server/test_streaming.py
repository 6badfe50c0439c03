"""Subscribers: several at once, reconnect-and-resume, a stuck one, and the final event every time."""

from __future__ import annotations

import threading

import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset, boring_setup
from onthefly.v1 import control_pb2, telemetry_pb2
from support import wait_until


def _seqs(frames):
    return [e.seq for f in frames for e in f.events]


def test_two_subscribers_and_a_reconnect_resume_without_loss_or_duplicates(live_run):
    model, opt, loss, loader = boring_setup(n=320)
    run = live_run(Trainer("t", "subs", max_epochs=3, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader)
    first = []
    second = []
    t1 = threading.Thread(target=lambda: first.extend(run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())))
    t2 = threading.Thread(target=lambda: second.extend(run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())))
    t1.start(), t2.start()

    # A third subscriber reads a while, disconnects, and reconnects from the last seq it saw.
    run.client.control.Step(control_pb2.StepRequest(steps=10))
    partial = []
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())
    for frame in stream:
        partial.extend(e.seq for e in frame.events)
        if any(e.step >= 5 for e in frame.events):
            break
    stream.cancel()
    run.client.control.Resume(control_pb2.ResumeRequest())
    rest = list(run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(after_seq=partial[-1])))
    run.join()
    t1.join(30), t2.join(30)

    everything = _seqs(first)
    assert everything == list(range(1, everything[-1] + 1))  # contiguous from 1: nothing lost
    assert _seqs(second) == everything
    assert partial + _seqs(rest) == everything  # the reconnect resumed exactly where it left off
    assert not any(f.HasField("gap") for f in first + second + rest)
    final = first[-1].events[-1]
    assert final.lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED


def test_a_stuck_subscriber_does_not_hold_training_back_and_is_told_what_it_missed(live_run):
    # Enough per-sample data (~40 MB of frames) that transport buffers cannot hide a reader that stopped.
    model, opt, loss, loader = boring_setup(n=100_000, batch_size=2000)
    trainer = Trainer("t", "stuck", max_epochs=16, port=0, start_paused=True, history_events=64,
                      shutdown_grace=60, verbose=False)
    run = live_run(trainer, model, opt, loss, loader)
    stuck = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())
    first = next(stuck)  # connected; from now on it reads nothing until training has ended
    run.client.control.Resume(control_pb2.ResumeRequest())
    wait_until(lambda: trainer.run.bus.closed, timeout=120, what="training to finish beside a stuck subscriber")
    assert trainer.run.step == 800
    rest = list(stuck)  # now it reads: gap reports, then the newest history through the final event
    gaps = [f.gap for f in rest if f.HasField("gap")]
    assert gaps and "history" in gaps[0].reason
    seqs = [e.seq for f in [first, *rest] for e in f.events]
    missed = sum(g.last_seq - g.first_seq + 1 for g in gaps)
    assert len(seqs) + missed == seqs[-1]  # every seq is either delivered or reported missing
    assert rest[-1].events[-1].lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED
    run.join()


def test_the_finished_event_reaches_a_connected_subscriber_100_of_100_runs(live_run):
    data = boring_dataset(32)
    for i in range(100):
        model = nn.Linear(16, 3)
        run = live_run(Trainer("t", f"final-{i}", max_steps=3, port=0, start_paused=True, verbose=False),
                       model, __import__("torch").optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                       DataLoader(data, batch_size=8))
        stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
            kinds=[telemetry_pb2.EVENT_KIND_LIFECYCLE]))
        assert next(stream).events[0].lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_STARTED
        run.client.control.Resume(control_pb2.ResumeRequest())
        last = [e for f in stream for e in f.events][-1]
        assert last.lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED, f"run {i}"
        run.join()
        run.close()


def test_kind_filter_and_from_latest(live_run):
    model, opt, loss, loader = boring_setup(n=64)
    run = live_run(Trainer("t", "filter", max_epochs=1, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader)
    history_len = run.client.control.GetStatus(control_pb2.GetStatusRequest()).status.last_seq
    latest = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(from_latest=True))
    metrics = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS]))
    run.client.control.Resume(control_pb2.ResumeRequest())
    latest_events = [e for f in latest for e in f.events]
    metric_events = [e for f in metrics for e in f.events]
    run.join()
    assert latest_events[0].seq > history_len
    assert {e.WhichOneof("payload") for e in metric_events} == {"step_metrics"}
    assert [e.step for e in metric_events] == list(range(1, 5))
    m = metric_events[0].step_metrics
    assert m.batch_size == 16 and m.lr == 0.05 and m.grad_norm > 0 and m.samples_per_second > 0


def test_a_subscriber_that_stopped_reading_does_not_hold_the_end_of_fit(live_run):
    # A reader that never reads again after its first frame; a grace of 10 minutes that the old shutdown
    # spent waiting for it (fit returned only when the grace ran out).
    model, opt, loss, loader = boring_setup(n=100_000, batch_size=2000)
    trainer = Trainer("t", "gone-quiet", max_epochs=4, port=0, start_paused=True, shutdown_grace=600,
                      verbose=False)
    run = live_run(trainer, model, opt, loss, loader)
    stuck = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())
    next(stuck)
    reader = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_LIFECYCLE]))
    run.client.control.Resume(control_pb2.ResumeRequest())
    last = [e for f in reader for e in f.events][-1]  # one that keeps reading still gets the end
    assert last.lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED
    result = run.join(timeout=120)
    assert result.steps == 200
    stuck.cancel()


def test_open_streams_never_starve_control_and_one_too_many_is_told_why(live_run):
    import grpc

    from onthefly.server.host import MAX_STREAMS
    from onthefly.v1.run_pb2 import RUN_STATE_PAUSED, RUN_STATE_RUNNING

    model, opt, loss, loader = boring_setup(n=64)
    run = live_run(Trainer("t", "many", max_epochs=1000, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader)
    streams = [run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest()) for _ in range(MAX_STREAMS)]
    for stream in streams:
        next(stream)  # each one is open and holds a server thread
    with_deadline = {"timeout": 30}
    assert run.client.control.GetStatus(control_pb2.GetStatusRequest(), **with_deadline).status.state
    assert run.client.control.Resume(control_pb2.ResumeRequest(), **with_deadline).receipt.status
    assert run.client.control.GetStatus(control_pb2.GetStatusRequest(), **with_deadline).status.state in (
        RUN_STATE_RUNNING, RUN_STATE_PAUSED)
    assert run.client.control.Pause(control_pb2.PauseRequest(), **with_deadline).receipt.status
    extra = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(), timeout=30)
    try:
        next(extra)
        raise AssertionError("a stream beyond the limit was served")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "open streams" in err.details()
    streams[0].cancel()
    wait_until(lambda: _can_subscribe(run), what="a freed stream slot")
    assert run.client.control.Resume(control_pb2.ResumeRequest(), **with_deadline).receipt.status
    for stream in streams[1:]:
        stream.cancel()


def _can_subscribe(run) -> bool:
    import grpc

    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(), timeout=30)
    try:
        next(stream)
        return True
    except grpc.RpcError:
        return False
    finally:
        stream.cancel()
