"""The client side of server mode: the same backend interface as the local store, over TrackingService.

Errors come back as the SDK's domain errors (NotFound, PermissionDenied, ...) with the server's message;
transport failures (server unreachable) stay ``grpc.RpcError`` so the writer can retry them.
"""

from __future__ import annotations


from pathlib import Path
from typing import Any, BinaryIO, Iterator

from onthefly import _grpc_env  # noqa: F401
import grpc
import pyarrow as pa

from onthefly.tracking import columns, convert, credentials
from onthefly.tracking.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                                      Unauthenticated)
from onthefly.tracking.records import (AppendResult, ExperimentRecord, FileRecord, OpenSpec, Status, StreamInfo,
                                       StreamKind)
from onthefly.v1 import tracking_pb2 as pb
from onthefly.v1 import tracking_pb2_grpc

CHUNK = 1 << 20
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024),
                   ("grpc.max_receive_message_length", 256 * 1024 * 1024)]
_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument, grpc.StatusCode.NOT_FOUND: NotFound,
           grpc.StatusCode.PERMISSION_DENIED: PermissionDenied, grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
           grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition}
DEFAULT_TIMEOUT = 60.0


def _domain(exc: grpc.RpcError) -> Exception:
    cls = _ERRORS.get(exc.code())
    return cls(exc.details()) if cls is not None else exc


class RemoteBackend:
    """TrackingService client implementing the store interface the SDK writes through. Thread-safe."""

    def __init__(self, address: str, token: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = credentials.normalize_address(address)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = tracking_pb2_grpc.TrackingServiceStub(self._channel)

    @classmethod
    def connect(cls, address: str | None = None, token: str | None = None) -> "RemoteBackend":
        """Connect with an explicit token, $ONTHEFLY_TOKEN, or the token stored by ``onthefly login``."""
        address, token, _ = credentials.resolve(address, token)
        return cls(address, token)

    def __repr__(self) -> str:
        return f"RemoteBackend({self.address!r})"

    def _call(self, rpc: str, request, timeout: float | None = None):
        try:
            return getattr(self._stub, rpc)(request, metadata=self._metadata, timeout=timeout or self._timeout)
        except grpc.RpcError as exc:
            raise _domain(exc) from None

    def close(self) -> None:
        self._channel.close()

    # experiments ---------------------------------------------------------------------------------------
    def whoami(self) -> str:
        return self._call("WhoAmI", pb.WhoAmIRequest()).user

    def open_experiment(self, spec: OpenSpec) -> tuple[ExperimentRecord, bool]:
        reply = self._call("OpenExperiment", convert.open_request(spec))
        return convert.experiment_from(reply.experiment), reply.created

    def set_status(self, prefix: str, status: Status, error: str = "", note: str = "",
                   writer: dict[str, Any] | None = None) -> ExperimentRecord:
        """The writer's statistics have no field on the wire; what it could not store goes into the note,
        so the server's history says so (never a silent loss)."""
        lost = _losses(writer or {})
        note = "; ".join(t for t in (note, lost) if t)
        reply = self._call("SetExperimentStatus", pb.SetExperimentStatusRequest(
            prefix=prefix, status=convert.status(status), error=error or "", note=note or ""))
        return convert.experiment_from(reply.experiment)

    def get_experiment(self, prefix: str) -> ExperimentRecord:
        return convert.experiment_from(self._call("GetExperiment", pb.GetExperimentRequest(prefix=prefix)).experiment)

    def describe(self, prefix: str) -> tuple[ExperimentRecord, list[StreamInfo], int]:
        reply = self._call("GetExperiment", pb.GetExperimentRequest(prefix=prefix))
        return (convert.experiment_from(reply.experiment), [convert.stream_info_from(s) for s in reply.streams],
                reply.file_count)

    def list_experiments(self, under: str = "") -> list[ExperimentRecord]:
        reply = self._call("ListExperiments", pb.ListExperimentsRequest(under=under or ""))
        return [convert.experiment_from(e) for e in reply.experiments]

    # params --------------------------------------------------------------------------------------------
    def set_params(self, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
        reply = self._call("SetParams", pb.SetParamsRequest(prefix=prefix, params_json=convert.params_json(values)))
        return convert.params_from(reply.params_json)

    def get_params(self, prefix: str) -> dict[str, Any]:
        return convert.params_from(self._call("GetParams", pb.GetParamsRequest(prefix=prefix)).params_json)

    # streams -------------------------------------------------------------------------------------------
    def append(self, prefix: str, kind: StreamKind, name: str, table: pa.Table, replace: bool = False) -> AppendResult:
        reply = self._call("AppendRows", pb.AppendRowsRequest(prefix=prefix, kind=convert.kind(kind), name=name,
                                                              arrow_ipc=convert.table_to_ipc(table), replace=replace))
        return AppendResult(reply.rows, reply.refused, list(reply.refused_reasons))

    def read(self, prefix: str, kind: StreamKind, name: str, start: int = 0, limit: int | None = None,
             start_time: float | None = None, end_time: float | None = None) -> tuple[pa.Table, int]:
        """Rows in pages of at most the server's page size, concatenated."""
        wanted = None if limit is None or limit < 0 else int(limit)
        tables, got, position, total = [], 0, max(0, int(start or 0)), 0
        while True:
            page = 0 if wanted is None else max(1, wanted - got)  # 0: the server's page size
            request = pb.ReadRowsRequest(prefix=prefix, kind=convert.kind(kind), name=name, start_index=position,
                                         limit=page)
            if start_time is not None:
                request.start_time = start_time
            if end_time is not None:
                request.end_time = end_time
            reply = self._call("ReadRows", request)
            table = convert.table_from_ipc(reply.arrow_ipc)
            total = reply.total_rows
            if wanted is not None:
                table = table.slice(0, max(0, wanted - got))
            tables.append(table)
            got += table.num_rows
            position += table.num_rows
            if table.num_rows == 0 or position >= total or (wanted is not None and got >= wanted):
                return columns.concat(tables), total

    def streams(self, prefix: str, kind: StreamKind | None = None) -> list[StreamInfo]:
        reply = self._call("ListStreams", pb.ListStreamsRequest(prefix=prefix, kind=convert.kind(kind)))
        return [convert.stream_info_from(s) for s in reply.streams]

    def flush(self, prefix: str | None = None, durable: bool = True) -> None:
        """Appends are stored when their call returns; nothing is held here."""

    def close_streams(self, prefix: str) -> None:
        """The server turns journals into parts when the experiment's status leaves RUNNING."""

    # files ---------------------------------------------------------------------------------------------
    def put_file(self, prefix: str, record: FileRecord, source: Path) -> FileRecord:
        def messages() -> Iterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(header=convert.file_header(prefix, record))
            with open(source, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield pb.UploadFileRequest(chunk=chunk)

        try:
            reply = self._stub.UploadFile(messages(), metadata=self._metadata, timeout=None)
        except grpc.RpcError as exc:
            raise _domain(exc) from None
        return convert.file_info_from(reply.file)

    def list_files(self, prefix: str) -> list[FileRecord]:
        return [convert.file_info_from(f) for f in self._call("ListFiles", pb.ListFilesRequest(prefix=prefix)).files]

    def read_file(self, prefix: str, file_id: str, dest: BinaryIO) -> FileRecord:
        record = None
        try:
            for message in self._stub.DownloadFile(pb.DownloadFileRequest(prefix=prefix, file_id=file_id),
                                                   metadata=self._metadata):
                if message.WhichOneof("part") == "file":
                    record = convert.file_info_from(message.file)
                else:
                    dest.write(message.chunk)
        except grpc.RpcError as exc:
            raise _domain(exc) from None
        if record is None:
            raise NotFound(f"the server sent no file for id {file_id}")
        return record

    def delete_file(self, prefix: str, file_id: str) -> FileRecord:
        reply = self._call("DeleteFile", pb.DeleteFileRequest(prefix=prefix, file_id=file_id))
        return convert.file_info_from(reply.file)


def _losses(stats: dict[str, Any]) -> str:
    """One line on the rows and files the writer could not store ("" when it stored everything)."""
    parts = [f"{stats[k]} rows {word}" for k, word in (("refused_rows", "refused"), ("failed_rows", "not written"))
             if stats.get(k)]
    if stats.get("upload_errors"):
        parts.append(f"{len(stats['upload_errors'])} files not stored")
    if not parts:
        return ""
    reasons = stats.get("reasons") or stats.get("upload_errors") or []
    return "writer: " + ", ".join(parts) + (f" ({'; '.join(reasons[:3])})" if reasons else "")
