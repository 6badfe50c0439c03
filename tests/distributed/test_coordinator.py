"""CoordinatorService under torchrun (CPU, gloo): the other ranks join rank 0 and their telemetry reaches a
client on rank 0's one stream, tagged with the rank."""

from __future__ import annotations

from onthefly.client import connect, sample_arrays
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, coordinator_pb2, coordinator_pb2_grpc, run_pb2, telemetry_pb2
from support import wait_until

T = telemetry_pb2


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
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)  # one stream, in rank 0's order
