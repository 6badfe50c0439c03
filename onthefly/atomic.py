"""Crash-safe file writes: write a temporary sibling, optionally fsync it, rename it over the target.

A reader, or a process started after a ``kill -9``, sees the old file or the complete new one, never a
torn one. ``durable`` adds fsync of the data before the rename and of the folder after it, so the new
file also survives a power loss. Sessions and tracking name their temporary files differently (see
``onthefly.sessions.atomic`` and ``onthefly.tracking.atomic``); the write itself is this one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink inside ``folder`` durable (a no-op where folders cannot be opened)."""
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
def atomic_writer(path: Path, tmp: Path, durable: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file (written at ``tmp``) that replaces ``path`` atomically on a clean exit and
    vanishes on an error. ``mode``: the new file's permission bits (default 0666 less the umask)."""
    bits = 0o666 if mode is None else mode
    f = open(tmp, "wb", opener=lambda name, flags: os.open(name, flags, bits))  # f.name stays the path
    try:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
            f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(Path(path).parent)
