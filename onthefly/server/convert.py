"""The one place that maps between protobuf messages and domain objects."""

from __future__ import annotations

from onthefly.runtime import events as d
from onthefly.runtime.bus import Gap
from onthefly.runtime.commands import Receipt
from onthefly.runtime.run import StatusSnapshot
from onthefly.server import packed
from onthefly.v1 import telemetry_pb2
from onthefly.v1.receipt_pb2 import Receipt as ProtoReceipt
from onthefly.v1.run_pb2 import Hyperparameters as ProtoHyperparameters
from onthefly.v1.run_pb2 import RunIdentity as ProtoRunIdentity
from onthefly.v1.run_pb2 import RunStatus as ProtoRunStatus
from onthefly.v1.telemetry_pb2 import Event as ProtoEvent
from onthefly.v1.telemetry_pb2 import Gap as ProtoGap

_LOG_LEVELS = ((50, telemetry_pb2.LOG_LEVEL_CRITICAL), (40, telemetry_pb2.LOG_LEVEL_ERROR),
               (30, telemetry_pb2.LOG_LEVEL_WARNING), (20, telemetry_pb2.LOG_LEVEL_INFO))


def log_level(levelno: int) -> int:
    """Python logging level number -> onthefly.v1.LogLevel."""
    for floor, level in _LOG_LEVELS:
        if levelno >= floor:
            return level
    return telemetry_pb2.LOG_LEVEL_DEBUG


def identity(value: d.RunIdentity) -> ProtoRunIdentity:
    return ProtoRunIdentity(project=value.project, run_name=value.run_name, run_id=value.run_id, pid=value.pid)


def hyperparameters(groups: list[tuple[int, dict[str, float]]]) -> list[ProtoHyperparameters]:
    return [ProtoHyperparameters(group=i, values=values) for i, values in groups]


def status(snap: StatusSnapshot) -> ProtoRunStatus:
    return ProtoRunStatus(
        identity=identity(snap.identity), state=int(snap.state), step=snap.step, epoch=snap.epoch,
        max_steps=snap.max_steps, max_epochs=snap.max_epochs, total_steps=snap.total_steps,
        last_loss=snap.last_loss, samples_per_second=snap.samples_per_second,
        hyperparameters=hyperparameters(snap.hyperparameters), last_seq=snap.last_seq,
        pending_steps=snap.pending_steps, device=snap.device, error=snap.error,
    )


def receipt(value: Receipt) -> ProtoReceipt:
    return ProtoReceipt(command_id=value.command_id, status=int(value.status),
                        applied_step=value.applied_step, reason=value.reason)


def gap(value: Gap) -> ProtoGap:
    return ProtoGap(first_seq=value.first_seq, last_seq=value.last_seq, reason=value.reason)


def eval_result(value: d.EvalResult) -> telemetry_pb2.EvalResult:
    return telemetry_pb2.EvalResult(split=value.split, loss=value.loss, samples=value.samples,
                                    metrics=value.metrics, seconds=value.seconds, reason=value.reason)


def event(value: d.Event) -> ProtoEvent:
    """Encode once; later subscribers reuse the cached message."""
    cached = value.encoded
    if cached is not None:
        return cached
    msg = ProtoEvent(seq=value.seq, step=value.step, time_unix=value.time, epoch=value.epoch, rank=value.rank)
    p = value.payload
    kind = value.kind
    if kind is d.EventKind.SAMPLE_LOSSES:
        msg.sample_losses.ParseFromString(packed.encode_sample_losses(p.split, p.indices, p.losses))
    elif kind is d.EventKind.STEP_METRICS:
        m = msg.step_metrics
        m.loss, m.lr, m.grad_norm = p.loss, p.lr, p.grad_norm
        m.samples_per_second, m.batch_size = p.samples_per_second, p.batch_size
        m.step_seconds, m.data_seconds = p.step_seconds, p.data_seconds
        if p.extra:
            m.extra.update(p.extra)
    elif kind is d.EventKind.EVAL_RESULT:
        msg.eval_result.CopyFrom(eval_result(p))
    elif kind is d.EventKind.LOG:
        msg.log.level, msg.log.logger, msg.log.message = log_level(p.level), p.logger, p.message
    elif kind is d.EventKind.RUNTIME_STATS:
        r = msg.runtime
        r.cpu_percent, r.rss_bytes, r.threads = p.cpu_percent, p.rss_bytes, p.threads
        r.dropped_at_source = p.dropped_at_source
        for g in p.gpus:
            r.gpus.add(index=g.index, name=g.name, utilization_percent=g.utilization_percent,
                       memory_used_bytes=g.memory_used_bytes, memory_total_bytes=g.memory_total_bytes,
                       torch_allocated_bytes=g.torch_allocated_bytes)
    elif kind is d.EventKind.LIFECYCLE:
        lc = msg.lifecycle
        lc.kind, lc.state, lc.message = int(p.kind), int(p.state), p.message
        if p.identity is not None:
            lc.identity.CopyFrom(identity(p.identity))
    elif kind is d.EventKind.COMMAND:
        c = msg.command
        c.command_id, c.name, c.applied, c.detail = p.command_id, p.name, p.applied, p.detail
    value.encoded = msg
    return msg
