"""The one place that maps between onthefly.v1 tracking messages and the tracking domain records.

Used by the server's servicer and by the client's remote backend; nothing else imports tracking_pb2.
"""

from __future__ import annotations

from onthefly.tracking import columns, jsonsafe
from onthefly.tracking.errors import InvalidArgument
from onthefly.tracking.records import ExperimentRecord, FileRecord, OpenSpec, Status, StreamInfo, StreamKind
from onthefly.v1 import tracking_pb2 as pb
from onthefly.v1.tracking_pb2 import Experiment as ProtoExperiment
from onthefly.v1.tracking_pb2 import FileHeader as ProtoFileHeader
from onthefly.v1.tracking_pb2 import FileInfo as ProtoFileInfo
from onthefly.v1.tracking_pb2 import StreamInfo as ProtoStreamInfo

_STATUS = {Status.RUNNING: pb.EXPERIMENT_STATUS_RUNNING, Status.COMPLETED: pb.EXPERIMENT_STATUS_COMPLETED,
           Status.FAILED: pb.EXPERIMENT_STATUS_FAILED, Status.CANCELLED: pb.EXPERIMENT_STATUS_CANCELLED}
_STATUS_BACK = {v: k for k, v in _STATUS.items()}
_KIND = {StreamKind.METRIC: pb.STREAM_KIND_METRIC, StreamKind.TRACK: pb.STREAM_KIND_TRACK,
         StreamKind.LOG: pb.STREAM_KIND_LOG}
_KIND_BACK = {v: k for k, v in _KIND.items()}

table_to_ipc = columns.to_ipc


def table_from_ipc(data: bytes):
    try:
        return columns.from_ipc(data)
    except ValueError as exc:
        raise InvalidArgument(f"arrow_ipc: {exc}") from None


def status(value: Status | None) -> int:
    return pb.EXPERIMENT_STATUS_UNSPECIFIED if value is None else _STATUS[Status(value)]


def status_from(value: int, required: bool = False) -> Status | None:
    found = _STATUS_BACK.get(value)
    if found is None and required:
        raise InvalidArgument("status must be RUNNING, COMPLETED, FAILED or CANCELLED")
    return found


def kind(value: StreamKind | None) -> int:
    return pb.STREAM_KIND_UNSPECIFIED if value is None else _KIND[StreamKind(value)]


def kind_from(value: int, required: bool = True) -> StreamKind | None:
    found = _KIND_BACK.get(value)
    if found is None and required:
        raise InvalidArgument("kind must be STREAM_KIND_METRIC, STREAM_KIND_TRACK or STREAM_KIND_LOG")
    return found


def _json_object(text: str, what: str) -> dict:
    if not text:
        return {}
    try:
        value = jsonsafe.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not standard JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def experiment(record: ExperimentRecord) -> ProtoExperiment:
    return ProtoExperiment(prefix=record.prefix, owner=record.owner, tags=record.tags, readme=record.readme,
                           metadata_json=jsonsafe.dumps(record.metadata), status=status(record.status),
                           error=record.error, created_at=record.created_at, updated_at=record.updated_at,
                           shared=record.shared, pid=record.pid, host=record.host,
                           history_json=jsonsafe.dumps(record.history))


def experiment_from(msg: ProtoExperiment) -> ExperimentRecord:
    history = jsonsafe.loads(msg.history_json) if msg.history_json else []
    return ExperimentRecord(prefix=msg.prefix, owner=msg.owner, tags=list(msg.tags), readme=msg.readme,
                            metadata=_json_object(msg.metadata_json, "metadata_json"),
                            status=status_from(msg.status) or Status.RUNNING, error=msg.error,
                            created_at=msg.created_at, updated_at=msg.updated_at, shared=msg.shared, pid=msg.pid,
                            host=msg.host, history=history)


def open_request(spec: OpenSpec) -> pb.OpenExperimentRequest:
    return pb.OpenExperimentRequest(prefix=spec.prefix, tags=spec.tags or [], readme=spec.readme or "",
                                    metadata_json=jsonsafe.dumps(spec.metadata) if spec.metadata else "",
                                    shared=spec.shared, status=status(spec.status), pid=spec.pid, host=spec.host)


def open_spec_from(msg: pb.OpenExperimentRequest) -> OpenSpec:
    return OpenSpec(prefix=msg.prefix, tags=list(msg.tags) or None, readme=msg.readme or None,
                    metadata=_json_object(msg.metadata_json, "metadata_json") or None, shared=msg.shared,
                    status=status_from(msg.status), pid=msg.pid, host=msg.host)


def stream_info(info: StreamInfo) -> ProtoStreamInfo:
    return ProtoStreamInfo(kind=kind(info.kind), name=info.name, rows=info.rows, fields=info.fields)


def stream_info_from(msg: ProtoStreamInfo) -> StreamInfo:
    return StreamInfo(kind_from(msg.kind), msg.name, msg.rows, list(msg.fields))


def file_info(record: FileRecord) -> ProtoFileInfo:
    return ProtoFileInfo(id=record.id, path=record.path, size=record.size, sha256=record.sha256,
                         content_type=record.content_type, description=record.description, tags=record.tags,
                         metadata_json=jsonsafe.dumps(record.metadata), created_at=record.created_at)


def file_info_from(msg: ProtoFileInfo) -> FileRecord:
    return FileRecord(id=msg.id, path=msg.path, size=msg.size, sha256=msg.sha256, content_type=msg.content_type,
                      description=msg.description, tags=list(msg.tags),
                      metadata=_json_object(msg.metadata_json, "metadata_json"), created_at=msg.created_at)


def file_header(prefix: str, record: FileRecord) -> ProtoFileHeader:
    return ProtoFileHeader(prefix=prefix, id=record.id, path=record.path, size=record.size, sha256=record.sha256,
                           description=record.description, tags=record.tags,
                           metadata_json=jsonsafe.dumps(record.metadata) if record.metadata else "",
                           created_at=record.created_at)


def file_header_from(msg: ProtoFileHeader) -> tuple[str, FileRecord]:
    from onthefly.tracking.filestore import guess_type
    import time

    record = FileRecord(id=msg.id, path=msg.path, size=msg.size, sha256=msg.sha256.lower(),
                        content_type=guess_type(msg.path), description=msg.description, tags=list(msg.tags),
                        metadata=_json_object(msg.metadata_json, "metadata_json"),
                        created_at=msg.created_at or time.time())
    return msg.prefix, record


def params_json(values: dict) -> str:
    return jsonsafe.dumps(values, "params")


def params_from(text: str) -> dict:
    return _json_object(text, "params_json")
