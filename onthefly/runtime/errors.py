"""Domain errors. Servicers map them to gRPC status codes; Python callers see them as they are."""


class OnTheFlyError(Exception):
    """Base class of errors a person can act on."""


class InvalidArgument(OnTheFlyError, ValueError):
    """The request itself is wrong (unknown key, negative learning rate, ...)."""


class FailedPrecondition(OnTheFlyError):
    """The request is well formed but the run is not in a state to accept it."""


class NotFound(OnTheFlyError, LookupError):
    """The thing the request names does not exist."""


class CommandRejected(OnTheFlyError):
    """Raised by Command.apply on the training thread: the receipt becomes REJECTED with this text."""
