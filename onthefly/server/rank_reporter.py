"""RankReporter: a rank other than 0 joins rank 0's run and streams its own telemetry there.

It observes the rank's bus (resolved events, on the bus's pump thread) and hands them to one background
thread that holds a ReportRank stream open to rank 0. The training thread is never involved: a slow or
absent rank 0 costs the loop nothing; when the queue is full the oldest batch is dropped and counted.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from typing import TYPE_CHECKING, Iterator

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.distributed.rendezvous import read_api
from onthefly.server import coordinator_convert
from onthefly.v1 import coordinator_pb2, coordinator_pb2_grpc

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.events import Event
    from onthefly.runtime.run import Run

log = logging.getLogger("onthefly")

MAX_QUEUED_BATCHES = 1024


class RankReporter:
    """Start with the rank's fit; ``close()`` after the loop ends flushes what the rank published."""

    def __init__(self, world: "World", run: "Run") -> None:
        self.world, self.run = world, run
        self._queue: collections.deque[list] = collections.deque()
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self.dropped = 0
        run.bus.observe(self._observe)
        self._thread = threading.Thread(target=self._report, name="onthefly-rank-report", daemon=True)
        self._thread.start()

    def _observe(self, events: list["Event"]) -> None:
        batch = coordinator_convert.outgoing(events)
        if not batch:
            return
        with self._cond:
            if len(self._queue) >= MAX_QUEUED_BATCHES:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(batch)
            self._cond.notify_all()

    def _requests(self) -> Iterator[coordinator_pb2.ReportRankRequest]:
        rank = self.world.rank
        while True:
            with self._cond:
                while not self._queue and not self._closing.is_set():
                    self._cond.wait(0.5)
                if not self._queue:  # closing, everything sent: the final message tells rank 0 we ended well
                    yield coordinator_pb2.ReportRankRequest(rank=rank, dropped_at_source=self.dropped, final=True)
                    return
                batch = self._queue.popleft()
                dropped = self.dropped
            yield coordinator_pb2.ReportRankRequest(rank=rank, events=batch, dropped_at_source=dropped)

    def _report(self) -> None:
        api = read_api(self.world, self._closing)
        if api is None:
            return
        from onthefly.client import connect

        try:
            with connect(address=api.address, token=api.token, root_certificates=api.root_certificates) as client:
                stub = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)
                stub.JoinRank(coordinator_pb2.JoinRankRequest(
                    rank=self.world.rank, world_size=self.world.world_size, host=self.world.host,
                    device=self.run.device, pid=os.getpid()), timeout=30)
                stub.ReportRank(self._requests())
        except grpc.RpcError as exc:  # rank 0 is gone or refused: training goes on; say why once
            log.warning("onthefly: rank %d could not report to rank 0: %s", self.world.rank,
                        exc.details() if hasattr(exc, "details") else exc)

    def close(self, timeout: float = 10.0) -> None:
        """Send what the rank published (the bus is drained first), end the stream, stop the thread."""
        self.run.bus.drain()
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        self._thread.join(timeout)
