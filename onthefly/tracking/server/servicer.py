"""TrackingService over gRPC: each method authenticates, converts, calls the handler, converts back."""

from __future__ import annotations

import functools

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.tracking import convert
from onthefly.tracking.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                                      ResourceExhausted, TrackingError, Unauthenticated)
from onthefly.tracking.server.handler import TrackingHandler
from onthefly.v1 import tracking_pb2 as pb
from onthefly.v1 import tracking_pb2_grpc

_CODES = ((Unauthenticated, grpc.StatusCode.UNAUTHENTICATED), (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
          (NotFound, grpc.StatusCode.NOT_FOUND), (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
          (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
          (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED))


def _code(exc: Exception) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _token(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer "):]
    return None


def _unary(method):
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            user = self.handler.authenticate(_token(context))
            return method(self, user, request, context)
        except (TrackingError, ValueError) as exc:
            code = _code(exc) if isinstance(exc, TrackingError) else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, str(exc))

    return wrapper


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    """Thin adapter over :class:`TrackingHandler`."""

    def __init__(self, handler: TrackingHandler) -> None:
        self.handler = handler

    @_unary
    def WhoAmI(self, user, request, context):
        return pb.WhoAmIResponse(user=user)

    @_unary
    def OpenExperiment(self, user, request, context):
        record, created = self.handler.open_experiment(user, convert.open_spec_from(request))
        return pb.OpenExperimentResponse(experiment=convert.experiment(record), created=created)

    @_unary
    def SetExperimentStatus(self, user, request, context):
        record = self.handler.set_status(user, request.prefix, convert.status_from(request.status, required=True),
                                         request.error, request.note)
        return pb.SetExperimentStatusResponse(experiment=convert.experiment(record))

    @_unary
    def GetExperiment(self, user, request, context):
        record, streams, files = self.handler.get_experiment(user, request.prefix)
        return pb.GetExperimentResponse(experiment=convert.experiment(record),
                                        streams=[convert.stream_info(s) for s in streams], file_count=files)

    @_unary
    def ListExperiments(self, user, request, context):
        records = self.handler.list_experiments(user, request.under)
        return pb.ListExperimentsResponse(experiments=[convert.experiment(r) for r in records])

    @_unary
    def SetParams(self, user, request, context):
        merged = self.handler.set_params(user, request.prefix, convert.params_from(request.params_json))
        return pb.SetParamsResponse(params_json=convert.params_json(merged))

    @_unary
    def GetParams(self, user, request, context):
        return pb.GetParamsResponse(params_json=convert.params_json(self.handler.get_params(user, request.prefix)))

    @_unary
    def AppendRows(self, user, request, context):
        result = self.handler.append(user, request.prefix, convert.kind_from(request.kind), request.name,
                                     convert.table_from_ipc(request.arrow_ipc), request.replace)
        return pb.AppendRowsResponse(rows=result.rows, refused=result.refused, refused_reasons=result.reasons)

    @_unary
    def ReadRows(self, user, request, context):
        table, total = self.handler.read(
            user, request.prefix, convert.kind_from(request.kind), request.name, request.start_index, request.limit,
            request.start_time if request.HasField("start_time") else None,
            request.end_time if request.HasField("end_time") else None)
        return pb.ReadRowsResponse(arrow_ipc=convert.table_to_ipc(table), total_rows=total)

    @_unary
    def ListStreams(self, user, request, context):
        streams = self.handler.streams(user, request.prefix, convert.kind_from(request.kind, required=False))
        return pb.ListStreamsResponse(streams=[convert.stream_info(s) for s in streams])

    def UploadFile(self, request_iterator, context):
        try:
            user = self.handler.authenticate(_token(context))
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("part") != "header":
                raise InvalidArgument("the first UploadFile message must carry the header")
            prefix, record = convert.file_header_from(first.header)
            chunks = (m.chunk for m in request_iterator if m.WhichOneof("part") == "chunk")
            stored = self.handler.upload(user, record, prefix, chunks)
            return pb.UploadFileResponse(file=convert.file_info(stored))
        except (TrackingError, ValueError) as exc:
            code = _code(exc) if isinstance(exc, TrackingError) else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, str(exc))

    @_unary
    def ListFiles(self, user, request, context):
        return pb.ListFilesResponse(files=[convert.file_info(f) for f in self.handler.list_files(user, request.prefix)])

    def DownloadFile(self, request, context):
        try:
            user = self.handler.authenticate(_token(context))
            record, chunks = self.handler.download(user, request.prefix, request.file_id)
        except (TrackingError, ValueError) as exc:
            code = _code(exc) if isinstance(exc, TrackingError) else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, str(exc))
        yield pb.DownloadFileResponse(file=convert.file_info(record))
        for chunk in chunks:
            if not context.is_active():
                return
            yield pb.DownloadFileResponse(chunk=chunk)

    @_unary
    def DeleteFile(self, user, request, context):
        record = self.handler.delete_file(user, request.prefix, request.file_id)
        return pb.DeleteFileResponse(file=convert.file_info(record))
