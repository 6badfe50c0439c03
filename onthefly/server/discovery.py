"""Discovery files: one JSON file per running trainer, so clients find runs without configuration.

Directory: $ONTHEFLY_RUNTIME_DIR, else $XDG_RUNTIME_DIR/onthefly, else ~/.onthefly/run (mode 0700).
File: <pid>-<port>.json, mode 0600, holding port, pid, token, project, run_name, run_id, started_at.
Written atomically; removed at exit. Files whose process is gone are ignored by readers and removed
by ``live_runs`` (they are ours: same directory, same naming).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pathlib
import re
import stat
import time
from dataclasses import asdict, dataclass

from onthefly import sigterm
from onthefly.processes import pid_alive

log = logging.getLogger("onthefly")

_NAME = re.compile(r"^(\d+)-(\d+)\.json$")


@dataclass(frozen=True)
class RunInfo:
    port: int
    pid: int
    token: str
    project: str
    run_name: str
    run_id: str
    started_at: float
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def runtime_dir() -> pathlib.Path:
    explicit = os.environ.get("ONTHEFLY_RUNTIME_DIR")
    if explicit:
        return pathlib.Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return pathlib.Path(xdg) / "onthefly"
    return pathlib.Path.home() / ".onthefly" / "run"


class DiscoveryFile:
    """Writes this process's discovery file and removes it on ``remove()`` or at interpreter exit."""

    def __init__(self, info: RunInfo) -> None:
        self.info = info
        self._owner = os.getpid()
        directory = private_dir(runtime_dir())
        self.path = directory / f"{info.pid}-{info.port}.json"
        tmp = self.path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(info), f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        atexit.register(self.remove)
        sigterm.add(self.remove)  # `kill PID` skips atexit

    def remove(self) -> None:
        if os.getpid() == self._owner:  # a forked child's exit or SIGTERM must not remove its parent's file
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        atexit.unregister(self.remove)
        sigterm.remove(self.remove)


def private_dir(directory: pathlib.Path) -> pathlib.Path:
    """``directory``, created 0700 if missing; an existing one must be ours, and is made 0700 if others
    could write or read it (their files there could point our clients elsewhere, or list our runs)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise PermissionError(f"onthefly: the discovery folder {directory} is not a folder owned by this user; "
                              "remove it or set ONTHEFLY_RUNTIME_DIR to a private folder")
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)
        log.warning("onthefly: the discovery folder %s was open to other users (mode %o); it is now 0700",
                    directory, stat.S_IMODE(st.st_mode))
    return directory


def live_runs(directory: pathlib.Path | None = None) -> list[RunInfo]:
    """Discovery files of running trainers, newest first; stale ones (dead pid) are removed."""
    directory = directory or runtime_dir()
    if not directory.is_dir():
        return []
    runs = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if not match:
            continue
        try:
            if hasattr(os, "getuid") and path.lstat().st_uid != os.getuid():
                continue  # another user's file: never trusted to say where a run listens
            data = json.loads(path.read_text())
            info = RunInfo(**data)
        except (OSError, ValueError, TypeError):
            continue
        if not pid_alive(info.pid):
            path.unlink(missing_ok=True)
            continue
        runs.append(info)
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return runs


def now() -> float:
    return time.time()
