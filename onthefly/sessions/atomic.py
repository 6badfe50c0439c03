"""Crash-safe file writes: write a temporary sibling, fsync it, rename it over the target, fsync the folder.

A reader (or a process started after a ``kill -9``) sees either the old file or the complete new one,
never a torn one. The temporary file has a fixed name (``<name>.partial``) so that whoever cleans the
folder later knows it belongs to the target and may remove it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink inside ``folder`` durable (a no-op where directories cannot be opened)."""
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
def atomic_writer(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on a clean exit it replaces ``path`` atomically, on an error it is removed.

    ``durable`` fsyncs the data before the rename and the folder after it, so the new file also
    survives a power loss; without it the write still survives a killed process.
    """
    path = Path(path)
    tmp = partial_path(path)
    f = open(tmp, "wb")
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


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path, durable) as f:
        f.write(data)
