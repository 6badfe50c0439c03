"""Domain errors of the tracking SDK. The servicer maps each to one gRPC status code; the SDK raises them
as they are, and each also derives from the built-in exception a caller would naturally catch."""

from __future__ import annotations


class TrackingError(Exception):
    """Base class of every error the tracking SDK raises on purpose."""


class InvalidArgument(TrackingError, ValueError):
    """A name, value or option is malformed; the message says which and what is allowed."""


class NotFound(TrackingError, LookupError):
    """The experiment, stream or file does not exist."""


class FailedPrecondition(TrackingError, RuntimeError):
    """The request conflicts with what is stored or with the experiment's state."""


class Unauthenticated(TrackingError, PermissionError):
    """No token, or a token the server does not know."""


class PermissionDenied(TrackingError, PermissionError):
    """The token is valid but its user may not do this (another user's experiment)."""


class BufferFull(TrackingError, RuntimeError):
    """The writer fell behind and the buffer is full while the policy is ``on_full="raise"``."""


class NotRunning(TrackingError, RuntimeError):
    """A call that needs a started experiment was made before ``run.start()`` or after it was closed."""


# ML-Dash's exception names, for scripts that catch them (``from onthefly.tracking import StorageError``).
MlDashError = TrackingError


class ConfigurationError(InvalidArgument):
    """A setting or argument is not usable (ML-Dash's name; a ValueError)."""


class StorageError(NotFound):
    """Stored data was not found or cannot be used (ML-Dash's name; a LookupError)."""


class ExperimentError(FailedPrecondition):
    """The experiment's state does not allow the call (ML-Dash's name; a RuntimeError)."""


class NetworkError(TrackingError):
    """Something logged could not be delivered to the store or server (ML-Dash's name)."""


AuthenticationError = Unauthenticated


class StorageFailed(TrackingError, OSError):
    """Rows were not stored (a full disk, an I/O error): held for a retry, or lost; the message counts them."""


class ResourceExhausted(TrackingError, RuntimeError):
    """A limit was reached (an upload larger than the server accepts, a user's storage quota)."""
