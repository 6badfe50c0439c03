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


class ResourceExhausted(OnTheFlyError):
    """A limit was reached (open streams, disk space, an upload quota); the message says which."""


# Messages go back in gRPC trailers (a few KiB at most) and to people: never echo a huge input whole.
MAX_MESSAGE_CHARS = 400


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (its middle elided: the start says what
    failed, the end usually why)."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    head = limit * 2 // 3
    return f"{flat[:head]} … {flat[-(limit - head - 3):]}"


def clip(value: object, limit: int = 200) -> str:
    """An input echoed in a message: its repr-free text, cut to ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
