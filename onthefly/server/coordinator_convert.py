"""CoordinatorService proto <-> domain: rank entries out, the other ranks' events in."""

from __future__ import annotations

import numpy as np

from onthefly.distributed.roster import RankEntry
from onthefly.runtime import events as d
from onthefly.server import convert
from onthefly.v1.coordinator_pb2 import RankInfo as ProtoRankInfo
from onthefly.v1.telemetry_pb2 import Event as ProtoEvent

# What a rank forwards: its own training figures. Lifecycle and commands are rank 0's, for the whole job.
FORWARDED = (d.EventKind.STEP_METRICS, d.EventKind.SAMPLE_LOSSES, d.EventKind.EVAL_RESULT, d.EventKind.LOG,
             d.EventKind.RUNTIME_STATS)
_PAYLOADS = {"step_metrics": d.EventKind.STEP_METRICS, "sample_losses": d.EventKind.SAMPLE_LOSSES,
             "eval_result": d.EventKind.EVAL_RESULT, "log": d.EventKind.LOG, "runtime": d.EventKind.RUNTIME_STATS}
_LOG_LEVELS = {v: k for k, v in ((10, 1), (20, 2), (30, 3), (40, 4), (50, 5))}


def rank_info(entry: RankEntry) -> ProtoRankInfo:
    return ProtoRankInfo(rank=entry.rank, state=int(entry.state), host=entry.host, device=entry.device,
                         pid=entry.pid, step=entry.step, samples_per_second=entry.samples_per_second,
                         data_seconds=entry.data_seconds, last_seen_unix=entry.last_seen, message=entry.message,
                         dropped_at_source=entry.dropped_at_source)


def outgoing(events: list[d.Event]) -> list[ProtoEvent]:
    """A rank's own events, as it sends them to rank 0."""
    return [convert.event(e) for e in events if e.kind in FORWARDED]


def incoming(msg: ProtoEvent) -> d.Event | None:
    """A reported event as a domain event (payload already resolved); None for a kind ranks do not forward."""
    which = msg.WhichOneof("payload")
    kind = _PAYLOADS.get(which)
    if kind is None:
        return None
    if kind is d.EventKind.STEP_METRICS:
        m = msg.step_metrics
        payload = d.StepMetrics(m.loss, m.lr, m.grad_norm, m.samples_per_second, m.batch_size, m.step_seconds,
                                m.data_seconds, dict(m.extra))
    elif kind is d.EventKind.SAMPLE_LOSSES:
        s = msg.sample_losses
        payload = d.SampleLosses(s.split, np.asarray(s.indices, dtype=np.int64), np.asarray(s.losses, dtype=np.float32))
    elif kind is d.EventKind.EVAL_RESULT:
        e = msg.eval_result
        payload = d.EvalResult(e.split, e.loss, e.samples, dict(e.metrics), e.seconds, e.reason)
    elif kind is d.EventKind.LOG:
        payload = d.LogRecord(_LOG_LEVELS.get(msg.log.level, 20), msg.log.logger, msg.log.message)
    else:
        r = msg.runtime
        payload = d.RuntimeStats(r.cpu_percent, r.rss_bytes, [
            d.GpuStats(g.index, g.name, g.utilization_percent, g.memory_used_bytes, g.memory_total_bytes,
                       g.torch_allocated_bytes) for g in r.gpus], r.dropped_at_source, r.threads)
    return d.Event(kind, msg.step, msg.epoch, msg.time_unix, payload)
