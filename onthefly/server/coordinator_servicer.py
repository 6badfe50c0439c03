"""CoordinatorService: the other ranks join rank 0's run and report into it; clients list the ranks.

Importing this module registers the service for every run server built. The roster lives in the loop
context (``ctx.extras[ROSTER]``, rank 0 of a distributed run); without one the run is not distributed.
"""

from __future__ import annotations

import os
import socket
import time

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.distributed.roster import ROSTER, RankEntry, RankState, Roster
from onthefly.runtime.errors import FailedPrecondition
from onthefly.runtime.run import Run
from onthefly.server import coordinator_convert
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.v1 import coordinator_pb2, coordinator_pb2_grpc

SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"].full_name


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def _roster(self) -> Roster:
        ctx = self._run.control.ctx
        roster = ctx.extras.get(ROSTER) if ctx is not None else None
        if roster is None:
            raise FailedPrecondition("this run is not distributed: no other rank can join it")
        return roster

    def JoinRank(self, request, context: grpc.ServicerContext):
        with domain_errors(context):
            run_id = self._roster().join(request.rank, request.world_size, request.host, request.device,
                                         request.pid)
        return coordinator_pb2.JoinRankResponse(run_id=run_id)

    def ReportRank(self, request_iterator, context: grpc.ServicerContext):
        with domain_errors(context):
            roster = self._roster()
        rank, received, final = None, 0, False
        try:
            for request in request_iterator:
                if rank is None:
                    rank = request.rank
                events = [e for e in map(coordinator_convert.incoming, request.events) if e is not None]
                with domain_errors(context):
                    roster.accept(request.rank, events, request.dropped_at_source)
                received += len(events)
                final = final or request.final
        except grpc.RpcError:  # the rank's side went away mid-stream
            pass
        if rank is not None:
            if final:
                roster.finished(rank)
            else:  # whether the iterator raised or just ended: without the final message the rank is gone
                roster.lost(rank, "its report stream broke (the process died or lost its connection to rank 0)")
        return coordinator_pb2.ReportRankResponse(events_received=received)

    def ListRanks(self, request, context: grpc.ServicerContext):
        ctx = self._run.control.ctx
        roster = ctx.extras.get(ROSTER) if ctx is not None else None
        if roster is None:  # a single-process run: one rank, this one
            entry = RankEntry(0, RankState.TRAINING, socket.gethostname(), self._run.device, os.getpid(),
                              self._run.step, self._run.samples_per_second, last_seen=time.time())
            return coordinator_pb2.ListRanksResponse(world_size=1, ranks=[coordinator_convert.rank_info(entry)])
        return coordinator_pb2.ListRanksResponse(
            world_size=roster.world_size, ranks=[coordinator_convert.rank_info(e) for e in roster.ranks()])


def add_to_server(server: grpc.Server, run: Run) -> list[str]:
    """Extension entry point: serve CoordinatorService."""
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(run), server)
    return [SERVICE_NAME]


register_extension(add_to_server)
