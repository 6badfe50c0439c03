"""CoordinatorService under torchrun (CPU, gloo): the other ranks join rank 0 and their telemetry reaches a
client on rank 0's one stream, tagged with the rank."""

from __future__ import annotations

import os

from onthefly.client import connect, sample_arrays
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, coordinator_pb2, coordinator_pb2_grpc, receipt_pb2, run_pb2, telemetry_pb2
from support import wait_until

T = telemetry_pb2


def _one_epoch(job) -> list:
    """Every event of a job started paused in an ``epoch``-like mode, from resume to FINISHED."""
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        stream = client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
        client.control.Resume(control_pb2.ResumeRequest())
        events = []
        for frame in stream:
            events.extend(frame.events)
            if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED
                   for e in frame.events):
                break
        stream.cancel()
    job.wait()
    return events


def _health(events) -> list[str]:
    return [e.log.message for e in events if e.WhichOneof("payload") == "log" and e.log.logger == "onthefly.health"]


def test_ranks_training_on_the_same_samples_are_found(ddp_job):
    findings = _health(_one_epoch(ddp_job(2, "overlap")))
    assert len(findings) == 1 and findings[0].startswith("data order: in epoch 0, 48 samples were trained on by more")


def test_a_rank_slow_to_load_its_batches_is_named(ddp_job):
    findings = _health(_one_epoch(ddp_job(2, "slowdata", "24")))
    assert len(findings) == 1 and findings[0].startswith("rank 1 is a data-loading straggler: it waits")


def test_every_index_of_the_epoch_reaches_the_client_once_across_ranks(ddp_job):
    job = ddp_job(2, "epoch")

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        ranks = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)

        def joined():
            listed = ranks.ListRanks(coordinator_pb2.ListRanksRequest())
            return listed if all(r.state == coordinator_pb2.RANK_STATE_TRAINING for r in listed.ranks) else None

        listed = wait_until(joined, timeout=60, what="rank 1 to join")
        assert listed.world_size == 2 and [r.rank for r in listed.ranks] == [0, 1]
        assert listed.ranks[1].pid != listed.ranks[0].pid and listed.ranks[1].device == "cpu"
        stream = client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
        assert client.control.GetStatus(control_pb2.GetStatusRequest()).status.state == run_pb2.RUN_STATE_PAUSED
        client.control.Resume(control_pb2.ResumeRequest())
        events = []
        for frame in stream:
            events.extend(frame.events)
            if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED
                   for e in frame.events):
                break
        stream.cancel()
    job.wait()
    by_rank: dict[int, list[int]] = {0: [], 1: []}
    steps: dict[int, list[int]] = {0: [], 1: []}
    for e in events:
        if e.WhichOneof("payload") == "sample_losses" and e.sample_losses.split == "train":
            by_rank[e.rank].extend(sample_arrays(e.sample_losses)[0].tolist())
        elif e.WhichOneof("payload") == "step_metrics":
            steps[e.rank].append(e.step)
    assert len(by_rank[0]) == len(by_rank[1]) == 48  # 96 samples, a DistributedSampler shard each
    assert not set(by_rank[0]) & set(by_rank[1])
    assert sorted(by_rank[0] + by_rank[1]) == list(range(96))  # the epoch, every index exactly once
    assert steps[0] == steps[1] == list(range(1, 7))
    assert _health(events) == []  # disjoint shards: data-order parity finds nothing
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)  # one stream, in rank 0's order


def test_a_killed_rank_is_reported_and_rank0_stays_up(ddp_job, capsys):
    import signal

    from onthefly.cli.main import main as cli

    job = ddp_job(2, "steer", separate=True)

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        ranks = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)

        def listed():
            return ranks.ListRanks(coordinator_pb2.ListRanksRequest()).ranks

        wait_until(lambda: listed()[1].state == coordinator_pb2.RANK_STATE_TRAINING, timeout=60, what="rank 1 to join")
        client.control.Step(control_pb2.StepRequest(steps=4))
        wait_until(lambda: listed()[1].step == 4, what="rank 1 to report step 4")
        stream = client.telemetry.Subscribe(T.SubscribeRequest(from_latest=True, kinds=[T.EVENT_KIND_LOG]), timeout=60)
        os.kill(job.ranks[1].pid, signal.SIGKILL)
        job.ranks[1].wait(30)
        lost = next(e for frame in stream for e in frame.events if "rank 1" in e.log.message)
        stream.cancel()
        assert lost.log.level == T.LOG_LEVEL_ERROR and "was lost after step 4" in lost.log.message
        entry = listed()[1]
        assert entry.state == coordinator_pb2.RANK_STATE_LOST and entry.pid == job.ranks[1].pid
        capsys.readouterr()
        assert cli(["--address", runs[0].address, "--token", runs[0].token, "ranks"]) == 2  # a rank is lost
        out = capsys.readouterr().out
        assert "lost" in out and "training" in out
        status = client.control.GetStatus(control_pb2.GetStatusRequest()).status
        assert status.state == run_pb2.RUN_STATE_PAUSED and status.step == 4  # rank 0's API still answers
        assert client.control.Stop(control_pb2.StopRequest()).receipt.applied_step == 4
    assert job.proc.wait(60) == 0, job.log()


def test_ranks_command_on_a_single_process_run(live_run, capsys):
    from onthefly.cli.main import main as cli
    from onthefly.demos.boring import boring_setup
    from onthefly.trainer.trainer import Trainer

    model, optimizer, loss_fn, loader = boring_setup()
    run = live_run(Trainer("single", "ranks", max_steps=5, port=0, start_paused=True, verbose=False),
                   model, optimizer, loss_fn, loader)
    capsys.readouterr()
    assert cli(["--address", run.trainer.address, "--token", run.trainer.token, "ranks", "--json"]) == 0
    rows = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["rank"], r["state"], r["pid"]) for r in rows] == [(0, "training", os.getpid())]


def test_a_rank_whose_weights_drift_is_named_with_the_first_differing_tensor(ddp_job):
    job = ddp_job(2, "nudge", "30")

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        stream = client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
        client.control.Resume(control_pb2.ResumeRequest())
        findings = []
        for frame in stream:
            findings += [e.log.message for e in frame.events
                         if e.WhichOneof("payload") == "log" and e.log.logger == "onthefly.health"]
            if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED
                   for e in frame.events):
                break
        stream.cancel()
    ranks = job.wait()
    # Checked at steps 5, 10 (equal), 15 (rank 1 moved after step 12): named once, with the tensor.
    diverged = [f for f in findings if "diverged" in f]  # (a busy machine may add a straggler warning)
    assert diverged == ["rank 1 diverged from rank 0 by step 15: first differing tensor is parameter 'module.0.weight'"]
    assert ranks[0]["weights"] != ranks[1]["weights"]


def test_tail_shows_one_ranks_events(ddp_job, capsys):
    import json
    import threading

    from onthefly.cli.main import main as cli

    job = ddp_job(2, "steer")
    runs = wait_until(lambda: job.proc.poll() is None and live_runs(), timeout=120, interval=0.1,
                      what="rank 0 to serve")
    address, token = runs[0].address, runs[0].token
    with connect(address=address, token=token) as client:
        client.control.Step(control_pb2.StepRequest(steps=6))
        capsys.readouterr()
        tail = threading.Thread(target=cli, args=(["--address", address, "--token", token, "tail", "--json",
                                                   "--rank", "1", "--kind", "step_metrics"],), daemon=True)
        tail.start()
        out: list[str] = []

        def printed_six():
            out.extend(capsys.readouterr().out.splitlines())
            return len(out) >= 6

        wait_until(printed_six, timeout=60, what="tail to print rank 1's six steps")
        client.control.Stop(control_pb2.StopRequest())  # the stream ends with the run, and tail with it
        tail.join(60)
    job.wait()
    out.extend(capsys.readouterr().out.splitlines())
    rows = [json.loads(line) for line in out]
    assert [(r["rank"], r["step"]) for r in rows] == [(1, s) for s in range(1, 7)]


def test_a_rank_killed_mid_step_fails_the_run_and_rank0_still_exports(ddp_job, tmp_path, capsys):
    import signal

    from onthefly.cli.main import main as cli
    from onthefly.v1 import sessions_pb2, sessions_pb2_grpc

    job = ddp_job(2, "steer", separate=True)

    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    runs = wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        ranks = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)

        def listed():
            return ranks.ListRanks(coordinator_pb2.ListRanksRequest()).ranks

        wait_until(lambda: listed()[1].state == coordinator_pb2.RANK_STATE_TRAINING, timeout=60, what="rank 1 to join")
        stream = client.telemetry.Subscribe(T.SubscribeRequest(
            from_latest=True, kinds=[T.EVENT_KIND_LOG, T.EVENT_KIND_LIFECYCLE]), timeout=120)
        client.control.Resume(control_pb2.ResumeRequest())  # trains freely: the kill lands inside a step
        wait_until(lambda: listed()[1].step >= 3, what="rank 1 to train 3 steps")
        os.kill(job.ranks[1].pid, signal.SIGKILL)
        job.ranks[1].wait(30)
        events = []
        for frame in stream:
            events.extend(frame.events)
            if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FAILED
                   for e in frame.events):
                break
        stream.cancel()
        lost = [e for e in events if e.WhichOneof("payload") == "log" and "rank 1" in e.log.message
                and "was lost after step" in e.log.message]
        failed = [e for e in events if e.WhichOneof("payload") == "lifecycle"
                  and e.lifecycle.kind == T.LIFECYCLE_KIND_FAILED]
        assert len(lost) == 1 and lost[0].log.level == T.LOG_LEVEL_ERROR, [e.log.message for e in events]
        assert len(failed) == 1 and lost[0].seq < failed[0].seq  # the lost rank is said before the run's end
        status = client.control.GetStatus(control_pb2.GetStatusRequest()).status
        assert status.state == run_pb2.RUN_STATE_FAILED  # rank 0's API still answers after the failure
        rank0, rank1 = listed()
        assert rank1.state == coordinator_pb2.RANK_STATE_LOST
        assert rank0.message.startswith("the run failed here: ")  # rank 0's own row says why it ended
        capsys.readouterr()
        assert cli(["--address", runs[0].address, "--token", runs[0].token, "ranks"]) == 2
        assert "lost" in capsys.readouterr().out
        bundle = tmp_path / "salvaged.onthefly"
        sessions = sessions_pb2_grpc.SessionsServiceStub(client.channel)
        exported = sessions.ExportSession(sessions_pb2.ExportSessionRequest(path=str(bundle)), timeout=60)
        assert exported.receipt.status == receipt_pb2.RECEIPT_STATUS_APPLIED
        assert exported.bundle.step == status.step and bundle.exists()
    assert job.proc.wait(120) != 0, job.log()  # fit raised the collective's error: the script failed
