"""TelemetryService: a thin adapter from bus cursors to the Subscribe stream."""

from __future__ import annotations

from typing import Iterator

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime.events import EventKind
from onthefly.runtime.run import Run
from onthefly.server import convert
from onthefly.v1 import telemetry_pb2, telemetry_pb2_grpc

MAX_EVENTS_PER_FRAME = 512


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def Subscribe(self, request: telemetry_pb2.SubscribeRequest, context: grpc.ServicerContext
                  ) -> Iterator[telemetry_pb2.SubscribeResponse]:
        bus = self._run.bus
        kinds = {EventKind(k) for k in request.kinds if k in EventKind._value2member_map_}
        if request.kinds and not kinds:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kinds lists no known EventKind value")
        cursor = bus.last_published_seq + 1 if request.from_latest else max(request.after_seq + 1, 1)
        bus.subscribe()
        try:
            while context.is_active():
                result = bus.read(cursor, MAX_EVENTS_PER_FRAME, timeout=0.25)
                cursor = result.next_seq
                events = result.events if not kinds else [e for e in result.events if e.kind in kinds]
                if events or result.gap is not None:
                    frame = telemetry_pb2.SubscribeResponse(
                        events=[convert.event(e) for e in events],
                        dropped_at_source=bus.dropped_at_source,
                        last_seq=bus.last_published_seq,
                    )
                    if result.gap is not None:
                        frame.gap.CopyFrom(convert.gap(result.gap))
                    yield frame
                if result.closed:
                    return
        finally:
            bus.unsubscribe()
