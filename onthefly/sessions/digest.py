"""SHA-256 of files, computed beside the work that writes or reads them.

Hashing 100 MB costs about as much as serialising it, so it runs on a helper thread that reads the
bytes back from the page cache (``os.pread``; hashlib and pread release the GIL): writing and hashing,
or loading and verifying, overlap instead of adding up.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import BinaryIO

CHUNK = 8 << 20


def sha256_region(fd: int, offset: int, size: int) -> str:
    """SHA-256 of ``size`` bytes of an open file from ``offset`` (a short file hashes what is there)."""
    h = hashlib.sha256()
    buf = bytearray(min(CHUNK, max(size, 1)))
    view = memoryview(buf)
    pos, end = offset, offset + size
    while pos < end:
        n = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
        if n <= 0:
            break
        h.update(view[:n])
        pos += n
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return sha256_region(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


class BackgroundDigest:
    """Hash a region of a file on a helper thread; ``result()`` waits for the hex digest."""

    def __init__(self, path: str | os.PathLike, offset: int, size: int) -> None:
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(os.fspath(path), offset, size),
                                        name="onthefly-digest", daemon=True)
        self._thread.start()

    def _run(self, path: str, offset: int, size: int) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                self._digest = sha256_region(fd, offset, size)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest


class HashingWriter:
    """A write-only file object for ``torch.save`` over an unbuffered file, hashed as it is written.

    Each ``write`` goes straight to the OS; a helper thread reads the new bytes back and hashes them
    while serialisation continues. ``finish()`` returns (bytes written, hex digest).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._start = raw.tell()
        self._written = 0
        self._closed = False
        self._cond = threading.Condition()
        self._hash = hashlib.sha256()
        self._error: BaseException | None = None
        self._fd = os.open(raw.name, os.O_RDONLY)  # the writer's own fd may be write-only
        self._thread = threading.Thread(target=self._follow, name="onthefly-digest", daemon=True)
        self._thread.start()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = 0
        while total < len(view):
            n = self._raw.write(view[total:])
            if n is None:  # pragma: no cover - only non-blocking files return None
                continue
            total += n
        with self._cond:
            self._written += total
            self._cond.notify()
        return total

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self._written

    def _follow(self) -> None:
        done = 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while True:
                with self._cond:
                    while done >= self._written and not self._closed:
                        self._cond.wait()
                    target, closed = self._written, self._closed
                while done < target:
                    n = os.preadv(self._fd, [view[: min(CHUNK, target - done)]], self._start + done)
                    if n <= 0:
                        raise OSError("the file being hashed got shorter while it was written")
                    self._hash.update(view[:n])
                    done += n
                if closed and done >= target:
                    return
        except BaseException as exc:
            self._error = exc

    def finish(self) -> tuple[int, str]:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)
        if self._error is not None:
            raise self._error
        return self._written, self._hash.hexdigest()
