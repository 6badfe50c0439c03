"""A job spanning hosts, simulated on one machine: 2 gloo ranks that report different host names
(``ONTHEFLY_HOSTNAME``, the test hook in onthefly.distributed.reach). Rank 1 joins rank 0 over TLS with the
token; a caller without rank 0's certificate or without the token is refused; the loopback API clients
use is unchanged. And a job on one host listens on nothing beyond 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pathlib

import grpc
import pytest
import torch.distributed as dist

from onthefly.client import connect, sample_arrays
from onthefly.distributed.reach import HOSTNAME_ENV
from onthefly.distributed.rendezvous import API_KEY, CERT_KEY
from onthefly.distributed.tls import self_signed
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, control_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc, telemetry_pb2
from support import wait_until

T = telemetry_pb2


def _serving(job):
    def serving():
        assert job.proc.poll() is None, job.log()
        return live_runs()

    return wait_until(serving, timeout=120, interval=0.1, what="rank 0 to serve")[0]


def _job_store(job):
    """The job's store, as a rank's view of OnTheFly's keys (the first fit's prefix)."""
    store = dist.TCPStore("127.0.0.1", job.store_port, is_master=False, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=60))
    return dist.PrefixStore("onthefly/fit0/", store)


def _wait_joined(client) -> coordinator_pb2.ListRanksResponse:
    ranks = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)

    def joined():
        listed = ranks.ListRanks(coordinator_pb2.ListRanksRequest())
        return listed if all(r.state == coordinator_pb2.RANK_STATE_TRAINING for r in listed.ranks) else None

    return wait_until(joined, timeout=90, interval=0.05, what="rank 1 to join")


def _run_epoch(client) -> list:
    stream = client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
    client.control.Resume(control_pb2.ResumeRequest())
    events = []
    for frame in stream:
        events.extend(frame.events)
        if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED
               for e in frame.events):
            break
    stream.cancel()
    return events


def _refusal(channel, token: str | None = None) -> grpc.StatusCode:
    stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListRanks(coordinator_pb2.ListRanksRequest(), metadata=metadata, timeout=30)
    channel.close()
    return refused.value.code()


def test_a_rank_on_another_host_reports_over_tls_and_callers_without_cert_or_token_are_refused(ddp_job):
    job = ddp_job(2, "epoch", separate=True, rank_env={0: {HOSTNAME_ENV: "node-a"}, 1: {HOSTNAME_ENV: "node-b"}})
    run = _serving(job)
    assert run.host == "127.0.0.1"  # clients outside the job: the loopback API, as before
    with connect(address=run.address, token=run.token) as client:  # plain gRPC, no TLS on loopback
        listed = _wait_joined(client)
        assert [(r.rank, r.host) for r in listed.ranks] == [(0, "node-a"), (1, "node-b")]

        api = json.loads(_job_store(job).get(API_KEY))
        certificate = _job_store(job).get(CERT_KEY)
        tls_address = api["tls_address"]
        assert tls_address != run.address and b"PRIVATE KEY" not in certificate
        host, port = tls_address.rsplit(":", 1)
        assert (host, int(port)) in _peers(job.ranks[1].pid)  # rank 1 holds its report stream there
        assert (host, run.port) not in _peers(job.ranks[1].pid)  # and not on the loopback API
        trusted = grpc.ssl_channel_credentials(root_certificates=certificate)
        # Refused: plain text; TLS trusting another certificate; rank 0's certificate without the token or
        # with a wrong one.
        assert _refusal(grpc.insecure_channel(tls_address), run.token) == grpc.StatusCode.UNAVAILABLE
        stranger = grpc.ssl_channel_credentials(root_certificates=self_signed(["127.0.0.1"]).certificate)
        assert _refusal(grpc.secure_channel(tls_address, stranger), run.token) == grpc.StatusCode.UNAVAILABLE
        assert _refusal(grpc.secure_channel(tls_address, trusted)) == grpc.StatusCode.UNAUTHENTICATED
        assert _refusal(grpc.secure_channel(tls_address, trusted), "0" * 48) == grpc.StatusCode.UNAUTHENTICATED
        with connect(address=tls_address, token=run.token, root_certificates=certificate) as rank_side:
            assert coordinator_pb2_grpc.CoordinatorServiceStub(rank_side.channel).ListRanks(
                coordinator_pb2.ListRanksRequest(), timeout=30).world_size == 2
            # Beyond loopback only what the ranks need: no control of the run.
            with pytest.raises(grpc.RpcError) as control:
                control_pb2_grpc.ControlServiceStub(rank_side.channel).Pause(control_pb2.PauseRequest(), timeout=30)
            assert control.value.code() == grpc.StatusCode.UNIMPLEMENTED

        events = _run_epoch(client)
    job.wait()
    remote = [i for e in events if e.rank == 1 and e.WhichOneof("payload") == "sample_losses"
              and e.sample_losses.split == "train" for i in sample_arrays(e.sample_losses)[0].tolist()]
    assert len(remote) == 48  # rank 1's whole shard reached the client through the TLS listener
    # The key was never written anywhere: not in the job's files, not in its store directory.
    for path in pathlib.Path(job.out).rglob("*"):
        assert not path.is_file() or b"PRIVATE KEY" not in path.read_bytes(), path


def test_a_job_on_one_host_listens_on_nothing_beyond_loopback(ddp_job):
    # Gloo on the loopback interface, so that every socket rank 0 listens on but the job's TCPStore
    # (which torch binds to every interface) is OnTheFly's or loopback-only.
    job = ddp_job(2, "epoch", separate=True, rank_env={r: {"GLOO_SOCKET_IFNAME": "lo"} for r in range(2)})
    run = _serving(job)
    with connect(address=run.address, token=run.token) as client:
        _wait_joined(client)
        assert not _job_store(job).check([CERT_KEY]) and "tls_address" not in json.loads(_job_store(job).get(API_KEY))
        listening = _listening(job.proc.pid)
        beyond = [f"{address}:{port}" for address, port in listening
                  if port != job.store_port and not _loopback(address)]
        assert ("127.0.0.1", run.port) in listening and beyond == []
        _run_epoch(client)
    job.wait()


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, read from /proc."""
    return {local for local, _ in _sockets(pid, "0A")}  # 0A: LISTEN


def _peers(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP peer process ``pid`` is connected to."""
    return {peer for _, peer in _sockets(pid, "01")}  # 01: ESTABLISHED


def _sockets(pid: int, state: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state and fields[9] in inodes:
                found.append((_endpoint(fields[1]), _endpoint(fields[2])))
    return found


def _endpoint(field: str) -> tuple[str, int]:
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word little-endian
    ip = ipaddress.ip_address(raw)
    return str(getattr(ip, "ipv4_mapped", None) or ip), int(hex_port, 16)
