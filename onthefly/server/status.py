"""Map domain errors to gRPC status codes, with the domain's message (written for a person)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

_CODES = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
)


@contextlib.contextmanager
def domain_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Inside a servicer method: turn a domain error into the matching status and abort."""
    try:
        yield
    except tuple(cls for cls, _ in _CODES) as exc:
        for cls, code in _CODES:
            if isinstance(exc, cls):
                context.abort(code, str(exc))
        raise
