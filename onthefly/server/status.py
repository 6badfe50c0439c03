"""Map errors to gRPC status codes, with a one-line message a person can act on.

Every servicer goes through this mapping (``domain_errors`` where a servicer converts explicitly, the
``ErrorStatusInterceptor`` for everything else), so no RPC ever answers UNKNOWN.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from typing import Iterator

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, one_line

log = logging.getLogger("onthefly")

_CODES = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Bad values that reach library code (int("abc"), float overflow, nesting too deep to parse).
_BAD_VALUE = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError, KeyError, IndexError)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(status code, one-line message) for an error raised while serving a call."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, one_line(str(exc))
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in _NO_SPACE:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, one_line(f"{where}no space left on device")
        if isinstance(exc, FileNotFoundError):
            return grpc.StatusCode.NOT_FOUND, one_line(f"{where}{reason}")
        return grpc.StatusCode.FAILED_PRECONDITION, one_line(f"{where}{reason}")
    if isinstance(exc, _BAD_VALUE):
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            detail = "the input is nested too deeply"
        return grpc.StatusCode.INVALID_ARGUMENT, one_line(f"invalid input: {detail}")
    return grpc.StatusCode.INTERNAL, one_line(f"internal error in onthefly ({type(exc).__name__}: {exc}); "
                                              "the run is unaffected; please report it")


def abort_with(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the call with the status ``exc`` maps to (re-raises an abort already under way)."""
    if context.code() is not None:  # context.abort() already chose the status
        raise exc
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("onthefly: an RPC failed unexpectedly", exc_info=exc)
    context.abort(code, message)


@contextlib.contextmanager
def domain_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Inside a servicer method: turn an error into the matching status and abort."""
    try:
        yield
    except Exception as exc:
        abort_with(context, exc)
