"""Crash-safe writes: a temporary sibling is written, optionally fsynced, then renamed over the target.

A reader, or a process started after a ``kill -9``, sees the old file or the complete new one, never a
torn one. ``durable`` adds fsync of the data and of the folder so the new file also survives power loss.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

TMP_SUFFIX = ".tmp-onthefly"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, durable: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` atomically on a clean exit and vanishes on an error."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    f = os.fdopen(fd, "wb")
    try:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path, durable, mode) as f:
        f.write(data)


def write_text(path: Path, text: str, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    write_bytes(path, text.encode("utf-8"), durable, mode)
