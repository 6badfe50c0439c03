"""What names are allowed and how they map to the file system.

Experiment prefixes are "owner/project/.../name"; each segment becomes a folder, so segments are checked
(no "." or "..", no control characters, no backslash, not hidden). Stream names (metrics, tracks) may hold
"/" and any unicode; each becomes one folder whose name is a reversible percent-encoding (long names get a
hash suffix), and the original name is stored beside the data.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from urllib.parse import quote

from onthefly.tracking.errors import InvalidArgument

MAX_SEGMENT = 128
MAX_STREAM_NAME = 256
MAX_COMPONENT_BYTES = 200
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_segment(segment: str, what: str, whole: str) -> None:
    if not segment:
        raise InvalidArgument(f"{what} {whole!r} has an empty segment (double or trailing '/')")
    if segment in (".", ".."):
        raise InvalidArgument(f"{what} {whole!r}: segment {segment!r} is not allowed")
    if segment.startswith("."):
        raise InvalidArgument(f"{what} {whole!r}: segment {segment!r} may not start with '.'")
    if "\\" in segment or _CONTROL.search(segment):
        raise InvalidArgument(f"{what} {whole!r}: segment {segment!r} contains a backslash or control character")
    if len(segment) > MAX_SEGMENT or len(segment.encode("utf-8")) > 255:
        raise InvalidArgument(f"{what} {whole!r}: segment {segment[:20]!r}... is longer than {MAX_SEGMENT} characters")


def default_owner() -> str:
    """The owner used when a prefix does not start with one: $ONTHEFLY_USER, else the login name."""
    name = os.environ.get("ONTHEFLY_USER") or getpass.getuser()
    return name


def check_user(name: str) -> str:
    """A user name: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 long."""
    if not isinstance(name, str) or not USER_RE.match(name):
        raise InvalidArgument(f"user name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
                              f"(starting with a letter or digit, at most 64 characters)")
    return name


def normalize_prefix(prefix: str) -> str:
    """Check an exact "owner/project/.../name" prefix (at least 3 segments) and return it normalized."""
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a string like 'owner/project/name', got {type(prefix).__name__}")
    segments = prefix.strip("/").split("/")
    for segment in segments:
        _check_segment(segment, "prefix", prefix)
    if len(segments) < 3:
        raise InvalidArgument(f"prefix {prefix!r} needs at least owner/project/name (3 segments)")
    return "/".join(segments)


def resolve_prefix(prefix: str | None, project: str | None = None, owner: str | None = None) -> str:
    """The full prefix for what a user passed: "owner/project/.../name" is taken as it is; with fewer than
    three segments (or with ``project=``), the owner (and project) are put in front."""
    if prefix is None:
        prefix = os.environ.get("ONTHEFLY_PREFIX")
    if not prefix:
        raise InvalidArgument("an experiment needs a prefix such as 'owner/project/run-1' "
                              "(or set $ONTHEFLY_PREFIX)")
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a string like 'owner/project/name', got {type(prefix).__name__}")
    segments = prefix.strip("/").split("/")
    if project:
        for segment in project.strip("/").split("/"):
            _check_segment(segment, "project", project)
        segments = [owner or default_owner(), *project.strip("/").split("/"), *segments]
    elif len(segments) < 3:
        if len(segments) < 2:
            raise InvalidArgument(f"prefix {prefix!r} needs a project: use 'project/{prefix}' or "
                                  f"'owner/project/{prefix}', or pass project=")
        segments = [owner or default_owner(), *segments]
    return normalize_prefix("/".join(segments))


def owner_of(prefix: str) -> str:
    """The first segment of a normalized prefix."""
    return prefix.split("/", 1)[0]


def check_stream_name(name: str, what: str = "metric") -> str:
    """A metric or track name: 1 to 256 characters, any unicode and '/', no control characters."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{what} name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise InvalidArgument(f"{what} name may not be empty")
    if len(name) > MAX_STREAM_NAME:
        raise InvalidArgument(f"{what} name {name[:30]!r}... is longer than {MAX_STREAM_NAME} characters")
    if _CONTROL.search(name):
        raise InvalidArgument(f"{what} name {name!r} contains a control character")
    return name


def component(name: str) -> str:
    """One safe, reversible folder name for a stream name (percent-encoded; hashed when very long)."""
    encoded = quote(name, safe="-_ =+,;@()[]{}~!$&'")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded.encode()) > MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        encoded = encoded[:MAX_COMPONENT_BYTES - 20] + "~" + digest
    return encoded


def normalize_file_path(path: str) -> str:
    """A logical file path inside an experiment, normalized to "/a/b/name.ext"."""
    if not isinstance(path, str):
        raise InvalidArgument(f"file path must be a string, got {type(path).__name__}")
    segments = [s for s in path.replace("\\", "/").split("/") if s and s != "."]
    if not segments:
        raise InvalidArgument(f"file path {path!r} has no file name")
    for segment in segments:
        if segment == "..":
            raise InvalidArgument(f"file path {path!r} may not contain '..'")
        if _CONTROL.search(segment):
            raise InvalidArgument(f"file path {path!r} contains a control character")
        if len(segment.encode("utf-8")) > 255:
            raise InvalidArgument(f"file path {path!r}: segment longer than 255 bytes")
    return "/" + "/".join(segments)


def join_file_path(folder: str | None, name: str | None) -> str:
    """The logical path of ``name`` inside ``folder`` (either may be empty)."""
    parts = [p for p in ((folder or "").strip("/"), (name or "").strip("/")) if p]
    return normalize_file_path("/".join(parts))
