"""A server interceptor that gives every RPC a meaningful status: an error a servicer did not convert
becomes the code ``status.status_of`` maps it to (never UNKNOWN), with a one-line message."""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.server.status import abort_with


def _unary(behaviour):
    def call(request, context):
        try:
            return behaviour(request, context)
        except Exception as exc:
            abort_with(context, exc)

    return call


def _streaming(behaviour):
    def call(request, context):
        try:
            yield from behaviour(request, context)
        except Exception as exc:
            abort_with(context, exc)

    return call


class ErrorStatusInterceptor(grpc.ServerInterceptor):
    """Wraps every method handler so unconverted exceptions map to a status code."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        kwargs = dict(request_deserializer=handler.request_deserializer,
                      response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary), **kwargs)
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream), **kwargs)
