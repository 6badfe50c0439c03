"""SessionsService: parse, call one sessions operation (a command applied at a step boundary, or a
read), map domain errors to status codes, answer. Registered with the server factory on import."""

from __future__ import annotations

import threading
import time

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime.commands import Command, Receipt, ReceiptStatus
from onthefly.runtime.errors import ResourceExhausted
from onthefly.runtime.run import Run
from onthefly.server import sessions_convert as convert
from onthefly.server.control_servicer import submit_and_wait
from onthefly.server.convert import receipt as proto_receipt
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.sessions import commands, sessions_of
from onthefly.v1 import sessions_pb2, sessions_pb2_grpc


AFTER_END_WAIT = 30.0  # seconds an export after the run's end waits for its end hooks
MAX_READERS = 4  # bundles or checkpoints read at once (each holds a server thread while it is read)


class SessionsServicer(sessions_pb2_grpc.SessionsServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run
        self._readers = threading.BoundedSemaphore(MAX_READERS)
        self._after_end = threading.Lock()  # exports once the loop has ended: one at a time

    def _sessions(self, context: grpc.ServicerContext):
        sessions = sessions_of(self._run)
        if sessions is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "this run has no session yet; try again once fit() is running")
        return sessions

    def _submit(self, context: grpc.ServicerContext, make) -> tuple:
        """Build the command (its constructor and prepare() may raise domain errors), submit, wait."""
        with domain_errors(context):
            command: Command = make(self._sessions(context))
            prepare = getattr(command, "prepare", None)
            if prepare is not None:
                # Reading and verifying files happens here, on this RPC thread: a few at a time, so
                # many large imports at once cannot hold every server thread.
                if not self._readers.acquire(blocking=False):
                    raise ResourceExhausted(f"{MAX_READERS} imports or restores are being read already; try "
                                            "again when one has finished")
                try:
                    prepare()
                finally:
                    self._readers.release()
        if isinstance(command, commands.ExportSession) and self._run.control.finished:
            return self._export_after_end(command, context)
        pending = submit_and_wait(self._run, command, context)
        return proto_receipt(pending.wait(0)), pending.result

    def _export_after_end(self, command: Command, context: grpc.ServicerContext) -> tuple:
        """The loop has ended and its hooks are done (rank 0 of a failed distributed run keeps its API up
        for this): no training thread applies commands any more, so the export runs here, as
        Sessions.export() does after fit."""
        ctx = self._run.control.ctx
        deadline = time.monotonic() + AFTER_END_WAIT
        while not self._run.bus.closed:  # the run's end hooks (history flush) finish first
            if time.monotonic() > deadline or not context.is_active():
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the run has ended and is still shutting down; "
                                                                   "try the export again in a moment")
            time.sleep(0.05)
        with self._after_end, domain_errors(context):
            command.check(self._run.control)
            result = command.apply(ctx)
        return proto_receipt(Receipt(0, ReceiptStatus.APPLIED, ctx.step)), result

    def GetSession(self, request, context):
        sessions = self._sessions(context)
        with domain_errors(context):
            info = sessions.info()
        return sessions_pb2.GetSessionResponse(session=convert.session(info))

    def CreateCheckpoint(self, request, context):
        receipt, result = self._submit(context, lambda s: commands.CreateCheckpoint(s, request.label))
        response = sessions_pb2.CreateCheckpointResponse(receipt=receipt)
        if result is not None:
            response.checkpoint.CopyFrom(convert.checkpoint(result))
        return response

    def ListCheckpoints(self, request, context):
        sessions = self._sessions(context)
        with domain_errors(context):
            checkpoints = sessions.checkpoints()
        return sessions_pb2.ListCheckpointsResponse(checkpoints=[convert.checkpoint(c) for c in checkpoints],
                                                    keep=sessions.keep)

    def RestoreCheckpoint(self, request, context):
        receipt, result = self._submit(context, lambda s: commands.RestoreCheckpoint(s, request.checkpoint_id))
        response = sessions_pb2.RestoreCheckpointResponse(receipt=receipt)
        if result is not None:
            response.checkpoint.CopyFrom(convert.checkpoint(result))
        return response

    def ExportSession(self, request, context):
        receipt, result = self._submit(context, lambda s: commands.ExportSession(s, request.path, request.overwrite))
        response = sessions_pb2.ExportSessionResponse(receipt=receipt)
        if result is not None:
            response.bundle.CopyFrom(convert.bundle(result))
        return response

    def ImportSession(self, request, context):
        receipt, result = self._submit(context, lambda s: commands.ImportSession(s, request.path))
        response = sessions_pb2.ImportSessionResponse(receipt=receipt)
        if result is not None:
            response.checkpoint.CopyFrom(convert.checkpoint(result))
            response.session.CopyFrom(convert.session(self._sessions(context).info()))
        return response


def add(server: grpc.Server, run: Run) -> list[str]:
    """Server-factory extension: serve SessionsService for ``run``."""
    sessions_pb2_grpc.add_SessionsServiceServicer_to_server(SessionsServicer(run), server)
    return [sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"].full_name]


register_extension(add)
