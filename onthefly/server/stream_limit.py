"""A cap on open streams, so they can never take every server thread.

Sync gRPC holds a pool thread for each open stream for as long as it stays open. Streams are capped
below the pool size, so unary calls (GetStatus, Pause, Resume ...) always find a free thread; a stream
beyond the cap is refused at once with RESOURCE_EXHAUSTED and a message saying what to close.
"""

from __future__ import annotations

import threading

from onthefly import _grpc_env  # noqa: F401
import grpc


class StreamLimitInterceptor(grpc.ServerInterceptor):
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_streams(self) -> int:
        return self._open

    def _refuse(self, request, context):
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"this run already serves {self.max_streams} open streams (its limit); close a dashboard, "
                      "`onthefly tail` or `watch` you no longer need, then try again")

    def _guarded(self, behaviour):
        def call(request, context):
            with self._lock:
                if self._open >= self.max_streams:
                    admitted = False
                else:
                    self._open += 1
                    admitted = True
            if not admitted:
                self._refuse(request, context)
                return
            released = threading.Event()

            def release() -> None:
                if not released.is_set():
                    released.set()
                    with self._lock:
                        self._open -= 1

            context.add_callback(release)  # however the call ends: finished, cancelled, aborted
            try:
                yield from behaviour(request, context)
            finally:
                release()

        return call

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:  # health Watch streams count too: they hold a thread like any other
            return handler
        kwargs = dict(request_deserializer=handler.request_deserializer,
                      response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._guarded(handler.unary_stream), **kwargs)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._guarded(handler.stream_stream), **kwargs)
        return handler
