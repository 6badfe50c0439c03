"""File checksums, computed beside the work that writes or reads them.

New files get a CRC-32 (``zlib.crc32``, 1-2 GB/s, or ISA-L's / zlib-ng's, about 7 GB/s, when one of
``isal`` / ``zlib-ng`` is installed; GIL released): it detects the damage a checksum
is for (truncation, flipped bits, a torn copy) at a quarter of SHA-256's cost, which on a 100 MB
checkpoint was as long as serialising it. Safety against hostile files does not come from the
checksum (whoever edits a file can edit its manifest too) but from loading tensors with
``torch.load(weights_only=True)`` only. SHA-256 checksums (bundles of format version 1, older stores)
are still verified.

Tensor files (``torch.save`` archives) get ``zip-crc32``: torch.save already computes a CRC-32 of every
record, so writing one costs no checksum pass at all; verifying checks each record (``zipcheck``).

A checksum is a ``(algorithm, hex)`` pair; manifests store it as ``{algorithm: hex}`` beside the size.
Verifying whole files runs on a helper thread reading from the page cache (``os.pread``; zlib, hashlib
and pread release the GIL), so loading and verifying overlap.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from typing import Any, BinaryIO

CHUNK = 8 << 20
ALGORITHM = "crc32"
ZIP_ALGORITHM = "zip-crc32"  # tensor files: the CRCs torch.save wrote into the archive (see zipcheck)
ALGORITHMS = ("crc32", ZIP_ALGORITHM, "sha256")
WRITEBACK_EVERY = 32 << 20  # durable writes: start writing back to disk every this many bytes

Checksum = tuple[str, str]


def _crc32_implementation():
    """zlib.crc32, or the same CRC-32 from ISA-L or zlib-ng when installed (about 7 GB/s instead of 1-2,
    with carry-less multiplication; both release the GIL): verifying a bundle is mostly this."""
    import importlib

    for module in ("isal.isal_zlib", "zlib_ng.zlib_ng"):
        try:
            fn = importlib.import_module(module).crc32
        except (ImportError, AttributeError):
            continue
        if fn(b"onthefly") == zlib.crc32(b"onthefly"):
            return fn, module.split(".")[0]
    return zlib.crc32, "zlib"


crc32, CRC32_BY = _crc32_implementation()


class _Crc32:
    def __init__(self) -> None:
        self._crc = 0

    def update(self, data) -> None:
        self._crc = crc32(data, self._crc)

    def hexdigest(self) -> str:
        return f"{self._crc:08x}"


def new(algorithm: str = ALGORITHM):
    """A hasher with ``update`` and ``hexdigest``."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def of_bytes(data: bytes, algorithm: str = ALGORITHM) -> Checksum:
    h = new(algorithm)
    h.update(data)
    return algorithm, h.hexdigest()


def recorded(meta: dict[str, Any]) -> Checksum | None:
    """The checksum a manifest entry or a checkpoint's tensor record carries (None if it has none)."""
    for algorithm in ALGORITHMS:
        value = meta.get(algorithm)
        if isinstance(value, str) and value:
            return algorithm, value
    return None


def as_fields(checksum: Checksum) -> dict[str, str]:
    return {checksum[0]: checksum[1]}


def of_region(fd: int, offset: int, size: int, algorithm: str = ALGORITHM) -> Checksum:
    """Checksum of ``size`` bytes of an open file from ``offset`` (a short file hashes what is there)."""
    h = new(algorithm)
    buf = bytearray(min(CHUNK, max(size, 1)))
    view = memoryview(buf)
    pos, end = offset, offset + size
    while pos < end:
        n = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
        if n <= 0:
            break
        h.update(view[:n])
        pos += n
    return algorithm, h.hexdigest()


def of_file(path: str | os.PathLike, algorithm: str = ALGORITHM) -> Checksum:
    fd = os.open(path, os.O_RDONLY)
    try:
        return of_region(fd, 0, os.fstat(fd).st_size, algorithm)
    finally:
        os.close(fd)


def region_matches(fd: int, offset: int, size: int, expected: Checksum) -> bool:
    """True if ``size`` bytes of an open file from ``offset`` match the recorded checksum."""
    if expected[0] == ZIP_ALGORITHM:
        from onthefly.sessions import zipcheck

        def read(off: int, n: int) -> bytes:
            return os.pread(fd, max(0, min(n, size - off)), offset + off) if off < size else b""

        def read_into(off: int, view: memoryview) -> int:
            return os.preadv(fd, [view[: max(0, min(len(view), size - off))]], offset + off) if off < size else 0

        return zipcheck.damage(read, size, expected[1], read_into) is None
    return of_region(fd, offset, size, expected[0]) == expected


def bytes_match(data: bytes, expected: Checksum) -> bool:
    if expected[0] == ZIP_ALGORITHM:
        from onthefly.sessions import zipcheck

        return zipcheck.damage(lambda off, n: data[off:off + n], len(data), expected[1]) is None
    return of_bytes(data, expected[0]) == expected


def file_matches(path: str | os.PathLike, expected: Checksum) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return region_matches(fd, 0, os.fstat(fd).st_size, expected)
    finally:
        os.close(fd)


def _start_writeback(fd: int, offset: int, size: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux), so a final fsync has little left."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, size, 2)  # SYNC_FILE_RANGE_WRITE: initiate, do not wait


_SFR: list = []


def _sync_file_range():
    if not _SFR:
        fn = None
        try:
            import ctypes
            import sys

            if sys.platform.startswith("linux"):
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _SFR.append(fn)
    return _SFR[0]


class BackgroundDigest:
    """Checksum a region of a file on a helper thread; ``result()`` waits for it."""

    def __init__(self, path: str | os.PathLike, offset: int, size: int, algorithm: str = ALGORITHM) -> None:
        self._checksum: Checksum | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(os.fspath(path), offset, size, algorithm),
                                        name="onthefly-digest", daemon=True)
        self._thread.start()

    def _run(self, path: str, offset: int, size: int, algorithm: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                self._checksum = of_region(fd, offset, size, algorithm)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self) -> Checksum:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._checksum is not None
        return self._checksum


class TensorWriter:
    """A write-only file object for ``torch.save`` over an unbuffered file.

    Each ``write`` goes straight to the OS; with ``writeback`` the kernel is asked every few tens of MB
    to start writing to disk, so that the caller's final fsync finds little left to do. ``finish()``
    returns (bytes written, checksum): the archive's ``zip-crc32`` (the CRCs torch.save computed, read
    back from its central directory: no second pass over the data), else a CRC-32 of all of it.
    """

    def __init__(self, raw: BinaryIO, writeback: bool = False) -> None:
        self._raw = raw
        self._start = raw.tell()
        self._written = 0
        self._synced = 0
        self._writeback = writeback

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = 0
        while total < len(view):
            n = self._raw.write(view[total:])
            if n is None:  # pragma: no cover - only non-blocking files return None
                continue
            total += n
        self._written += total
        if self._writeback and self._written - self._synced >= WRITEBACK_EVERY:
            _start_writeback(self._raw.fileno(), self._start + self._synced, self._written - self._synced)
            self._synced = self._written
        return total

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self._written

    def finish(self) -> tuple[int, Checksum]:
        from onthefly.sessions import zipcheck

        fd = os.open(self._raw.name, os.O_RDONLY)  # the writer's own fd may be write-only
        try:
            start, size = self._start, self._written
            value = zipcheck.checksum(lambda off, n: os.pread(fd, n, start + off), size)
            checksum = (ZIP_ALGORITHM, value) if value is not None else of_region(fd, start, size)
        finally:
            os.close(fd)
        return size, checksum
