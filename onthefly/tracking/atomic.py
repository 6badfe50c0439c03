"""Crash-safe writes: a temporary sibling is written, optionally fsynced, then renamed over the target.

A reader, or a process started after a ``kill -9``, sees the old file or the complete new one, never a
torn one. ``durable`` adds fsync of the data and of the folder so the new file also survives power loss.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from onthefly import atomic as _atomic
from onthefly.atomic import fsync_dir

__all__ = ["TMP_SUFFIX", "atomic_writer", "fsync_dir", "write_bytes", "write_text"]

TMP_SUFFIX = ".tmp-onthefly"


@contextlib.contextmanager
def atomic_writer(path: Path, durable: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` atomically on a clean exit and vanishes on an error."""
    path = Path(path)
    # The pid in the temporary name keeps two processes writing one file from sharing a temporary.
    with _atomic.atomic_writer(path, path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}"), durable, mode) as f:
        yield f


def write_bytes(path: Path, data: bytes, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path, durable, mode) as f:
        f.write(data)


def write_text(path: Path, text: str, durable: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    write_bytes(path, text.encode("utf-8"), durable, mode)
