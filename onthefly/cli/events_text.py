"""Turn telemetry events into JSON-ready dicts and one-line text, for `tail` and `watch`."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from onthefly.v1 import run_pb2, telemetry_pb2


def event_type(event: telemetry_pb2.Event) -> str:
    return event.WhichOneof("payload") or "unknown"


def event_dict(event: telemetry_pb2.Event) -> dict[str, Any]:
    """{seq, type, step, epoch, time, rank, <payload fields>} with proto field names."""
    kind = event_type(event)
    out: dict[str, Any] = {"seq": event.seq, "type": kind, "step": event.step, "epoch": event.epoch,
                           "time": event.time_unix, "rank": event.rank}
    if kind != "unknown":
        payload = MessageToDict(getattr(event, kind), preserving_proto_field_name=True,
                                always_print_fields_with_no_presence=True)
        if kind == "sample_losses":
            payload["indices"] = [int(i) for i in payload.get("indices", [])]
        out[kind] = payload
    return out


def state_name(state: int) -> str:
    return run_pb2.RunState.Name(state).removeprefix("RUN_STATE_") if state else "UNKNOWN"


def event_line(event: telemetry_pb2.Event) -> str:
    kind = event_type(event)
    head = f"#{event.seq:<7} step {event.step:<7}" + (f" rank {event.rank}" if event.rank else "")
    if kind == "step_metrics":
        m = event.step_metrics
        return f"{head} loss {m.loss:.5g}  lr {m.lr:.3g}  grad_norm {m.grad_norm:.3g}  {m.samples_per_second:,.0f} samples/s"
    if kind == "sample_losses":
        s = event.sample_losses
        worst = max(s.losses) if s.losses else float("nan")
        return f"{head} {s.split} per-sample losses: {len(s.losses)} samples, max {worst:.5g}"
    if kind == "eval_result":
        r = event.eval_result
        extra = "".join(f"  {k} {v:.4g}" for k, v in sorted(r.metrics.items()))
        return f"{head} {r.split} loss {r.loss:.5g} over {r.samples} samples{extra} ({r.reason})"
    if kind == "log":
        level = telemetry_pb2.LogLevel.Name(event.log.level).removeprefix("LOG_LEVEL_")
        return f"{head} [{level}] {event.log.logger}: {event.log.message}"
    if kind == "runtime":
        r = event.runtime
        gpus = "".join(f"  gpu{g.index} {g.utilization_percent:.0f}% {g.memory_used_bytes / 2**30:.1f}GiB" for g in r.gpus)
        return f"{head} cpu {r.cpu_percent:.0f}%  rss {r.rss_bytes / 2**20:.0f}MiB{gpus}"
    if kind == "lifecycle":
        lc = event.lifecycle
        name = telemetry_pb2.LifecycleKind.Name(lc.kind).removeprefix("LIFECYCLE_KIND_")
        return f"{head} {name}" + (f": {lc.message}" if lc.message else "")
    if kind == "command":
        c = event.command
        verdict = "applied" if c.applied else "rejected"
        return f"{head} command {c.name} #{c.command_id} {verdict}: {c.detail}"
    return f"{head} {kind}"
