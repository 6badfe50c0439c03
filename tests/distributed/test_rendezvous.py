"""Rendezvous through a real TCPStore, in one process: rank 0 publishes, a rank on another host reads.

Rank 0's API here is a real loopback server of a run that is not distributed (no roster), which is
enough to tell a call that reached CoordinatorService (FAILED_PRECONDITION) from one refused before it."""

from __future__ import annotations

import datetime
import sys
import threading

import grpc
import pytest
import torch.distributed as dist

from onthefly.client import connect
from onthefly.distributed.rendezvous import ApiPublisher, declined_key, read_api
from onthefly.distributed.world import World
from onthefly.runtime.bus import EventBus
from onthefly.runtime.events import EventKind
from onthefly.runtime.run import Run
from onthefly.v1 import coordinator_pb2, coordinator_pb2_grpc


@pytest.fixture
def store():
    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                           timeout=datetime.timedelta(seconds=30))
    yield master


@pytest.fixture
def run():
    run = Run("p", "r", EventBus())
    yield run
    run.bus.close()


def _world(store, rank: int, host: str) -> World:
    return World(rank, 2, "gloo", host, "127.0.0.1", store.port, "onthefly/fit0/")


def _read(world: World):
    return read_api(world, threading.Event())


def test_a_rank_on_another_host_gets_a_tls_address_and_rank0s_certificate(store, run):
    publisher = ApiPublisher(_world(store, 0, "node-a"), run, "127.0.0.1:1", "t0ken")
    try:
        endpoint = _read(_world(store, 1, "node-b"))
        assert endpoint.address == publisher.listener.address and endpoint.token == "t0ken"
        assert endpoint.root_certificates.startswith(b"-----BEGIN CERTIFICATE-----")
        assert b"PRIVATE KEY" not in endpoint.root_certificates
        with connect(address=endpoint.address, token="t0ken", root_certificates=endpoint.root_certificates) as c:
            stub = coordinator_pb2_grpc.CoordinatorServiceStub(c.channel)
            with pytest.raises(grpc.RpcError) as refused:  # reached the servicer: TLS and token passed
                stub.JoinRank(coordinator_pb2.JoinRankRequest(rank=1, world_size=2), timeout=30)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        publisher.close(1.0)


def test_a_rank_on_rank0s_host_keeps_the_loopback_api(store, run):
    publisher = ApiPublisher(_world(store, 0, "node-a"), run, "127.0.0.1:1", "t0ken")
    try:
        endpoint = _read(_world(store, 1, "node-a"))
        assert (endpoint.address, endpoint.root_certificates) == ("127.0.0.1:1", None)
        assert publisher.listener is None  # nothing listens beyond loopback
    finally:
        publisher.close(1.0)


def test_without_cryptography_rank0_says_how_to_install_it_and_the_remote_rank_declines(store, run, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)
    logs = []
    run.bus.observe(lambda events: logs.extend(e.payload.message for e in events if e.kind is EventKind.LOG))
    publisher = ApiPublisher(_world(store, 0, "node-a"), run, "127.0.0.1:1", "t0ken")
    try:
        assert _read(_world(store, 1, "node-b")) is None
        assert dist.PrefixStore("onthefly/fit0/", store).check([declined_key(1)])  # rank 0 will not wait for it
        run.bus.drain()
        assert any("pip install 'onthefly[multinode]'" in m and "rank 1 on node-b" in m for m in logs), logs
    finally:
        publisher.close(1.0)
