"""Sessions domain objects -> onthefly.v1 sessions messages (the one place that maps them)."""

from __future__ import annotations

from onthefly.sessions.bundle import BundleInfo
from onthefly.sessions.checkpoint import CheckpointInfo
from onthefly.sessions.session import SessionInfo
from onthefly.v1 import sessions_pb2
from onthefly.v1.sessions_pb2 import Bundle as ProtoBundle
from onthefly.v1.sessions_pb2 import Checkpoint as ProtoCheckpoint
from onthefly.v1.sessions_pb2 import LineageEntry as ProtoLineageEntry
from onthefly.v1.sessions_pb2 import Session as ProtoSession

_REASONS = {
    "request": sessions_pb2.CHECKPOINT_REASON_REQUEST,
    "pause": sessions_pb2.CHECKPOINT_REASON_PAUSE,
    "test": sessions_pb2.CHECKPOINT_REASON_TEST,
    "schedule": sessions_pb2.CHECKPOINT_REASON_SCHEDULE,
    "export": sessions_pb2.CHECKPOINT_REASON_EXPORT,
}
_ORIGINS = {
    "new": sessions_pb2.SESSION_ORIGIN_NEW,
    "resumed": sessions_pb2.SESSION_ORIGIN_RESUMED,
    "imported": sessions_pb2.SESSION_ORIGIN_IMPORTED,
}


def checkpoint(value: CheckpointInfo) -> ProtoCheckpoint:
    return ProtoCheckpoint(
        checkpoint_id=value.checkpoint_id, step=value.step, epoch=value.epoch, batch_in_epoch=value.batch_in_epoch,
        reason=_REASONS.get(value.reason, sessions_pb2.CHECKPOINT_REASON_UNSPECIFIED), label=value.label,
        created_unix=value.created_unix, size_bytes=value.size_bytes,
    )


def lineage_entry(entry: dict) -> ProtoLineageEntry:
    return ProtoLineageEntry(
        session_id=entry.get("session_id", ""), project=entry.get("project", ""), run_name=entry.get("run_name", ""),
        run_id=entry.get("run_id", ""), origin=_ORIGINS.get(entry.get("origin", ""), 0), source=entry.get("source", ""),
        from_step=int(entry.get("from_step", 0)), created_unix=float(entry.get("created_unix", 0.0)),
    )


def session(value: SessionInfo) -> ProtoSession:
    return ProtoSession(
        session_id=value.session_id, folder=value.folder, lineage=[lineage_entry(e) for e in value.lineage],
        checkpoint_count=value.checkpoint_count, metric_steps=value.metric_steps,
        sample_loss_rows=value.sample_loss_rows, event_count=value.event_count,
    )


def bundle(value: BundleInfo) -> ProtoBundle:
    return ProtoBundle(
        path=value.path, size_bytes=value.size_bytes, format_version=value.format_version,
        session_id=value.session_id, step=value.step, checkpoint_count=value.checkpoint_count,
        file_count=value.file_count,
    )
