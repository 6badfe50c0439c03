"""Crash-safe file writes: write a temporary sibling, fsync it, rename it over the target, fsync the folder.

A reader (or a process started after a ``kill -9``) sees either the old file or the complete new one,
never a torn one. The temporary file has a fixed name (``<name>.partial``) so that whoever cleans the
folder later knows it belongs to the target and may remove it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO, Iterator

from onthefly import atomic as _atomic
from onthefly.atomic import fsync_dir

__all__ = ["PARTIAL_SUFFIX", "atomic_writer", "fsync_dir", "partial_path", "write_bytes"]

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_writer(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on a clean exit it replaces ``path`` atomically, on an error it is removed.

    ``durable`` fsyncs the data before the rename and the folder after it, so the new file also
    survives a power loss; without it the write still survives a killed process.
    """
    path = Path(path)
    with _atomic.atomic_writer(path, partial_path(path), durable) as f:
        yield f


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path, durable) as f:
        f.write(data)
