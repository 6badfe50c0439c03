"""Per-run token check for every RPC except the standard health service."""

from __future__ import annotations

import hmac

from onthefly import _grpc_env  # noqa: F401
import grpc

METADATA_KEY = "authorization"
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer(token: str) -> tuple[str, str]:
    """The metadata pair a client sends: ("authorization", "Bearer <token>")."""
    return (METADATA_KEY, f"Bearer {token}")


def _deny(message: str):
    def abort(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return abort


def _denying_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    deny = _deny(message)
    kwargs = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    return grpc.stream_stream_rpc_method_handler(deny, **kwargs)


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_OPEN_PREFIXES):
            return handler
        sent = dict(handler_call_details.invocation_metadata or ()).get(METADATA_KEY)
        if sent is None:
            return _denying_handler(handler, "missing token: send metadata 'authorization: Bearer <token>' "
                                              "(the token is in the run's discovery file; `onthefly ps` lists runs)")
        if not hmac.compare_digest(sent.encode(), self._expected):
            return _denying_handler(handler, "wrong token for this run: use the token from this run's discovery "
                                              "file (`onthefly ps --tokens`)")
        return handler
