"""HistoryService: parse, read the session's metric history (never the training thread), answer.
Registered with the server factory on import."""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime.run import Run
from onthefly.server import history_convert as convert
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.sessions import sessions_of
from onthefly.sessions.metric_query import query_metrics
from onthefly.v1 import history_pb2, history_pb2_grpc


class HistoryServicer(history_pb2_grpc.HistoryServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def GetMetricHistory(self, request, context):
        sessions = sessions_of(self._run)
        if sessions is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "this run has no session yet; try again once fit() is running")
        with domain_errors(context):
            session = sessions.require_session()
            self._run.bus.drain()  # the history then includes every step published so far
            answer = query_metrics(session.history, list(request.names), request.start_step, request.end_step,
                                   request.buckets)
        return convert.metric_history(answer)


def add(server: grpc.Server, run: Run) -> list[str]:
    """Server-factory extension: serve HistoryService for ``run``."""
    history_pb2_grpc.add_HistoryServiceServicer_to_server(HistoryServicer(run), server)
    return [history_pb2.DESCRIPTOR.services_by_name["HistoryService"].full_name]


register_extension(add)
