"""Domain records: what an experiment, a stream and a stored file are, independent of storage and wire."""

from __future__ import annotations

import enum
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from onthefly.processes import pid_alive  # noqa: F401  (re-exported: tracking imports it from here)


class Status(str, enum.Enum):
    """Lifecycle state of an experiment."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StreamKind(str, enum.Enum):
    """Kinds of row streams."""

    METRIC = "metric"
    TRACK = "track"
    LOG = "log"


LOG_STREAM = "logs"
HISTORY_LIMIT = 200


def this_host() -> str:
    return socket.gethostname()


@dataclass
class OpenSpec:
    """What a process asks for when it opens (creates or updates) an experiment."""

    prefix: str
    tags: list[str] | None = None
    readme: str | None = None
    metadata: dict[str, Any] | None = None
    shared: bool = False
    status: Status | None = Status.RUNNING
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=this_host)


@dataclass
class ExperimentRecord:
    """The stored metadata of one experiment."""

    prefix: str
    owner: str
    tags: list[str] = field(default_factory=list)
    readme: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.RUNNING
    error: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    shared: bool = False
    pid: int = 0
    host: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    writer: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentRecord":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["status"] = Status(known.get("status", "RUNNING"))
        return cls(**known)

    def process_gone(self) -> bool:
        """True when the record says RUNNING but its process on this host no longer exists (killed or
        crashed without closing); False when it is closed, alive, or on another host (unknown)."""
        return self.status is Status.RUNNING and self.host == this_host() and not pid_alive(self.pid)

    def describe_status(self) -> str:
        """The status as a person should read it."""
        if self.process_gone():
            return (f"RUNNING, but process {self.pid} is gone: it ended without closing (killed or crashed); "
                    f"everything it flushed is kept")
        if self.error:
            return f"{self.status.value}: {self.error}"
        return self.status.value

    def add_history(self, status: Status, note: str = "", pid: int = 0, host: str = "") -> None:
        self.history.append({"status": status.value, "at": time.time(), "pid": pid or os.getpid(),
                             "host": host or this_host(), "note": note})
        del self.history[:-HISTORY_LIMIT]


@dataclass
class StreamInfo:
    """One metric, track or log stream of an experiment."""

    kind: StreamKind
    name: str
    rows: int
    fields: list[str]


@dataclass
class FileRecord:
    """The stored metadata of one file."""

    id: str
    path: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"
    description: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    bindrs: list[str] = field(default_factory=list)  # the collections it is bound to (local store only)
    updated_at: float | None = None  # set when its description/tags/metadata are updated (local store only)

    @property
    def folder(self) -> str:
        """The logical folder ("/" for the root), ML-Dash's "path"."""
        return self.path.rsplit("/", 1)[0] or "/"

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["filename"] = self.filename
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FileRecord":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class AppendResult:
    """What an append stored: rows written, and rows refused with the reasons."""

    rows: int
    refused: int = 0
    reasons: list[str] = field(default_factory=list)
