"""The portable session bundle: one file that carries a session to another machine.

Layout (all integers little-endian)::

    MAGIC (16 bytes)  file 1 | file 2 | ...  manifest (JSON)  trailer (64 bytes)
    trailer = manifest offset (u64) | manifest size (u64) | SHA-256 of the manifest (32) | END (16)

The manifest names the format and its version, the session's identity and lineage, the checkpoint
to resume from, and every file with its bundle-relative path, offset, size and checksum (from format
version 2 on: CRC-32, for tensor files the CRCs torch.save wrote into them; version 1 bundles carry
SHA-256 and still import; see ``digest``). The manifest
comes last so that files stream straight into the bundle as they are produced; the trailer's end
marker proves the file was written to the end.

Reading refuses, with a ``BundleError`` naming the problem, a truncated file, a checksum mismatch,
an unknown format version, a path that escapes the bundle, and tensor files that need anything but
plain tensors to load (``torch.load(weights_only=True)``; nothing in a bundle is ever unpickled
otherwise). Reading never writes anywhere.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from onthefly.runtime.errors import InvalidArgument, NotFound, clip
from onthefly.sessions import checkpoint as ck
from onthefly.sessions.atomic import fsync_dir, partial_path
from onthefly.sessions import digest, validate, zipcheck
from onthefly.sessions.store import safe_relative

FORMAT = "onthefly-session-bundle"
FORMAT_VERSION = 2  # 2: per-file CRC-32 instead of SHA-256 (1 still reads)
MAGIC = b"ONTHEFLY-BUNDLE\n"
END = b"ONTHEFLY-END\n\x00\x00\x00"
TRAILER = struct.Struct("<QQ32s16s")
COPY_CHUNK = 8 << 20


class BundleError(InvalidArgument):
    """A bundle that cannot be imported. ``problem`` is one of: missing, format, truncated, checksum,
    version, path, pickle."""

    def __init__(self, path: str | os.PathLike, problem: str, detail: str) -> None:
        super().__init__(f"cannot import {clip(os.fspath(path))}: {detail}")
        self.path = os.fspath(path)
        self.problem = problem


@dataclass(frozen=True)
class BundleInfo:
    """What an export wrote."""

    path: str
    size_bytes: int
    format_version: int
    session_id: str
    step: int
    checkpoint_count: int
    file_count: int


# -- writing ---------------------------------------------------------------------------------------
class BundleWriter:
    """Streams files into ``path`` (via ``path.partial``); ``finish`` writes the manifest and renames."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        if not self.path.is_absolute():
            self.path = self.path.resolve()
        if self.path.exists() and not overwrite:
            from onthefly.runtime.errors import FailedPrecondition

            raise FailedPrecondition(f"{self.path} already exists; choose another path or allow overwriting it")
        if not self.path.parent.is_dir():
            raise NotFound(f"cannot export to {self.path}: the folder {self.path.parent} does not exist")
        self._tmp = partial_path(self.path)
        try:  # never truncate a file this export did not create
            self._f = open(self._tmp, "wb", buffering=0, opener=lambda p, flags: os.open(p, flags | os.O_EXCL, 0o644))
        except FileExistsError:
            from onthefly.runtime.errors import FailedPrecondition

            raise FailedPrecondition(f"{self._tmp} exists (left by an export that was killed, or not ours); "
                                     "remove it or choose another path") from None
        try:
            self._f.write(MAGIC)
        except BaseException:
            self.abort()
            raise
        self._files: list[dict[str, Any]] = []
        self._names: set[str] = set()

    @property
    def partial(self) -> Path:
        """The temporary file written until ``finish`` renames it into place."""
        return self._tmp

    def _entry(self, rel: str, offset: int, size: int, checksum: digest.Checksum, kind: str) -> None:
        name = str(safe_relative(rel))
        if name in self._names:
            raise ValueError(f"duplicate bundle path {name}")
        self._names.add(name)
        self._files.append({"path": name, "offset": offset, "size": size, **digest.as_fields(checksum),
                            "kind": kind})

    def add_bytes(self, rel: str, data: bytes, kind: str = "json") -> None:
        offset = self._f.tell()
        self._f.write(data)
        self._entry(rel, offset, len(data), digest.of_bytes(data), kind)

    def add_tensors(self, rel: str, tensors: dict[str, torch.Tensor]) -> tuple[int, digest.Checksum]:
        """torch.save ``tensors`` straight into the bundle, checksummed while written; (size, checksum)."""
        offset = self._f.tell()
        size, checksum = ck.write_tensors(self._f, tensors, self.durable)
        self._f.seek(offset + size)
        self._entry(rel, offset, size, checksum, "tensors")
        return size, checksum

    def add_file(self, rel: str, source: Path, kind: str, checksum: digest.Checksum | None = None) -> None:
        """Copy ``source`` in; ``checksum`` (known from when it was written) spares re-hashing it."""
        offset = self._f.tell()
        size = os.path.getsize(source)
        verify = None if checksum else digest.BackgroundDigest(source, 0, size)
        with open(source, "rb") as src:
            copied = 0
            try:
                while copied < size:
                    n = os.copy_file_range(src.fileno(), self._f.fileno(), size - copied)
                    if n == 0:
                        break
                    copied += n
            except (AttributeError, OSError):
                src.seek(copied)
                while True:
                    chunk = src.read(COPY_CHUNK)
                    if not chunk:
                        break
                    self._f.write(chunk)
                    copied += len(chunk)
        self._f.seek(offset + copied)
        if copied != size:
            raise OSError(f"{source} changed size while it was copied into the bundle")
        self._entry(rel, offset, size, checksum or verify.result(), kind)

    def finish(self, manifest: dict[str, Any], durable: bool | None = None) -> int:
        """Write manifest and trailer, make the file durable and move it into place; returns its size."""
        import hashlib

        durable = self.durable if durable is None else durable

        body = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION, files=self._files,
                    created_unix=time.time())
        data = json.dumps(body, indent=1, allow_nan=True).encode()
        offset = self._f.tell()
        self._f.write(data)
        self._f.write(TRAILER.pack(offset, len(data), hashlib.sha256(data).digest(), END))
        size = self._f.tell()
        if durable:
            os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        if durable:
            fsync_dir(self.path.parent)
        return size

    def abort(self) -> None:
        self._f.close()
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


# -- reading ---------------------------------------------------------------------------------------
class _Slice(io.RawIOBase):
    """A read-only, seekable window onto part of an open file (what torch.load reads from); with a
    ``checker``, every byte read is also handed to it (records checked as they are loaded)."""

    def __init__(self, fd: int, offset: int, size: int, checker: "zipcheck.RecordChecker | None" = None) -> None:
        super().__init__()
        self._fd, self._offset, self._size, self._pos = fd, offset, size, 0
        self._checker = checker

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        view = memoryview(buffer).cast("B")[:n]
        got = os.preadv(self._fd, [view], self._offset + self._pos)
        if self._checker is not None and got > 0:
            self._checker.seen(self._pos, view[:got])
        self._pos += got
        return got

    def read_into(self, offset: int, view: memoryview) -> int:
        """Read at ``offset`` of the window without moving it (for the checker's leftovers)."""
        n = max(0, min(len(view), self._size - offset))
        return os.preadv(self._fd, [view[:n]], self._offset + offset) if n else 0

    def read_at(self, offset: int, count: int) -> bytes:
        return os.pread(self._fd, max(0, min(count, self._size - offset)), self._offset + offset)


class Bundle:
    """An opened, structurally checked bundle. ``Bundle.open(path)``; use as a context manager."""

    def __init__(self, path: Path, fd: int, manifest: dict[str, Any], files: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self._fd = fd
        self.manifest = manifest
        self.files = files

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Bundle":
        path = Path(path).expanduser()
        try:
            # Non-blocking: opening a FIFO a client names must never hold a server thread.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise BundleError(path, "missing", "no such file") from None
        except IsADirectoryError:
            raise BundleError(path, "format", "it is a folder, not a bundle file") from None
        except PermissionError:
            raise BundleError(path, "missing", "permission denied: the trainer's user cannot read it") from None
        except OSError as exc:
            raise BundleError(path, "missing", exc.strerror or str(exc)) from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise BundleError(path, "format", "it is a folder, not a bundle file")
            if not stat.S_ISREG(mode):
                raise BundleError(path, "format", "it is not a regular file (a FIFO, socket or device); give the "
                                                  "bundle file itself")
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)
            manifest, files = _read_manifest(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, manifest, files)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- contents --------------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    @property
    def session(self) -> dict[str, Any]:
        return self.manifest.get("session", {})

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("checkpoints", []))

    def _entry(self, rel: str) -> dict[str, Any]:
        entry = self.files.get(rel)
        if entry is None:
            raise BundleError(self.path, "format", f"the manifest names '{rel}' but lists no such file")
        return entry

    def read_bytes(self, rel: str, verify: bool = True) -> bytes:
        entry = self._entry(rel)
        data = os.pread(self._fd, entry["size"], entry["offset"])
        if len(data) != entry["size"]:
            raise BundleError(self.path, "truncated", f"'{rel}' is cut short")
        if verify:
            if not digest.bytes_match(data, digest.recorded(entry)):
                raise BundleError(self.path, "checksum", f"'{rel}' does not match its checksum: the file is damaged")
        return data

    def checks_inline(self, rel: str) -> bool:
        """True if loading ``rel`` with ``load_tensors(rel, check=True)`` verifies it completely (its
        checksum is the archive's own CRCs), so it needs no separate pass."""
        expected = digest.recorded(self._entry(rel))
        return expected is not None and expected[0] == digest.ZIP_ALGORITHM

    def load_tensors(self, rel: str, check: bool = False) -> dict[str, torch.Tensor]:
        """torch.load(weights_only=True) of a tensor file. ``check`` (where ``checks_inline``): verify
        it from the bytes loading reads; otherwise verify checksums separately (``verify``)."""
        entry = self._entry(rel)
        head = os.pread(self._fd, 4, entry["offset"])
        if head != ck.ZIP_MAGIC:
            raise BundleError(self.path, "pickle", f"'{rel}' is not a torch tensor archive (a raw pickle or "
                                                   "other payload); refused without loading it")
        source = _Slice(self._fd, entry["offset"], entry["size"])
        if check and self.checks_inline(rel):
            try:
                found = zipcheck.records(source.read_at, entry["size"], digest.recorded(entry)[1])
            except zipcheck.Damaged:
                raise BundleError(self.path, "checksum", f"'{rel}' does not match its checksum: the file is "
                                                         "damaged") from None
            source._checker = zipcheck.RecordChecker(found)
        try:
            zipcheck.plain(source.read_at, entry["size"])
        except zipcheck.NotAZip as exc:
            raise BundleError(self.path, "format", f"'{rel}' is not a plain torch tensor archive ({exc}); refused "
                                                   "without inflating it") from None
        try:
            tensors = ck.load_tensors(source, f"'{rel}'")
        except InvalidArgument as exc:
            if source._checker is not None:
                self._finish_check(rel, source)  # damage explains a failed load best
            problem = "pickle" if "pickle payload" in str(exc) else "format"
            raise BundleError(self.path, problem, str(exc)) from None
        if source._checker is not None:
            self._finish_check(rel, source)
        return tensors

    def _finish_check(self, rel: str, source: _Slice) -> None:
        try:
            source._checker.finish(source.read_into)
        except zipcheck.Damaged:
            raise BundleError(self.path, "checksum", f"'{rel}' does not match its checksum: the file is "
                                                     "damaged") from None

    def verify(self, rels: list[str] | None = None) -> "_Verification":
        """Start checking every file's SHA-256 on a helper thread; ``.result()`` raises on a mismatch."""
        return _Verification(self, rels if rels is not None else list(self.files))

    def _state(self, rel_dir: str) -> tuple[dict[str, Any], str]:
        """(state.json of a checkpoint, verified and parsed; the bundle path of its tensor file)."""
        state_rel = f"{rel_dir}/{ck.STATE_FILE}"
        try:
            doc = ck.parse_state(self.read_bytes(state_rel), f"'{state_rel}'")
        except BundleError:
            raise
        except InvalidArgument as exc:
            problem = "version" if "format version" in str(exc) else "format"
            raise BundleError(self.path, problem, str(exc)) from None
        tensors_rel = f"{rel_dir}/{(doc.get('tensors') or {}).get('file', ck.TENSORS_FILE)}"
        safe_path(self.path, tensors_rel)
        return doc, tensors_rel

    def checkpoint_doc(self, rel_dir: str) -> dict[str, Any]:
        """A checkpoint's state.json, verified and checked (its tensors are not loaded)."""
        return self._state(rel_dir)[0]

    def tensors_of(self, rel_dir: str) -> str:
        """The bundle path of a checkpoint's tensor file."""
        return self._state(rel_dir)[1]

    def checkpoint(self, rel_dir: str, check: bool = False) -> ck.Checkpoint:
        """Load one checkpoint (state.json verified; tensors loaded and, with ``check``, verified where
        ``checks_inline``; verify the rest with ``verify``)."""
        doc, tensors_rel = self._state(rel_dir)
        tensors = self.load_tensors(tensors_rel, check)
        try:
            return ck.checkpoint_from(doc, tensors, f"'{rel_dir}'")
        except InvalidArgument as exc:
            raise BundleError(self.path, "format", str(exc)) from None

    @property
    def resume_dir(self) -> str:
        return self.manifest["resume_checkpoint"]

    def history_files(self, suffix: str) -> list[str]:
        return sorted(rel for rel, e in self.files.items() if rel.startswith("history/") and rel.endswith(suffix))

    def iter_file(self, rel: str) -> Iterator[bytes]:
        entry = self._entry(rel)
        pos, end = entry["offset"], entry["offset"] + entry["size"]
        while pos < end:
            chunk = os.pread(self._fd, min(COPY_CHUNK, end - pos), pos)
            if not chunk:
                raise BundleError(self.path, "truncated", f"'{rel}' is cut short")
            yield chunk
            pos += len(chunk)

    def copy_file(self, rel: str, dst) -> None:
        for chunk in self.iter_file(rel):
            dst.write(chunk)


class _Verification:
    def __init__(self, bundle: Bundle, rels: list[str]) -> None:
        import threading

        self._bundle = bundle
        self._rels = rels
        self._bad: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="onthefly-verify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for rel in self._rels:
                entry = self._bundle.files[rel]
                if not digest.region_matches(self._bundle._fd, entry["offset"], entry["size"],
                                             digest.recorded(entry)):
                    self._bad = rel
                    return
        except BaseException as exc:
            self._error = exc

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._bad is not None:
            raise BundleError(self._bundle.path, "checksum",
                              f"'{self._bad}' does not match its checksum: the bundle is damaged")


def safe_path(bundle_path: Path, rel: str) -> str:
    try:
        return str(safe_relative(rel))
    except InvalidArgument:
        raise BundleError(bundle_path, "path", f"the path '{clip(rel, 120)}' escapes the bundle; refused") from None


def _read_manifest(path: Path, fd: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    import hashlib

    size = os.fstat(fd).st_size
    head = os.pread(fd, len(MAGIC), 0)
    if head != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise BundleError(path, "truncated", f"the file is truncated ({size} bytes)")
        raise BundleError(path, "format", "it is not an OnTheFly session bundle (wrong leading bytes)")
    if size < len(MAGIC) + TRAILER.size:
        raise BundleError(path, "truncated", f"the file is truncated ({size} bytes)")
    offset, length, manifest_hash, end = TRAILER.unpack(os.pread(fd, TRAILER.size, size - TRAILER.size))
    if end != END:
        raise BundleError(path, "truncated", f"the file is truncated: its end marker is missing ({size} bytes)")
    if offset < len(MAGIC) or offset + length != size - TRAILER.size:
        raise BundleError(path, "format", "its trailer points outside the file; the bundle is damaged")
    data = os.pread(fd, length, offset)
    if hashlib.sha256(data).digest() != manifest_hash:
        raise BundleError(path, "checksum", "its manifest does not match the manifest checksum: the bundle is damaged")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BundleError(path, "format", "its manifest is not valid JSON") from None
    except RecursionError:
        raise BundleError(path, "format", "its manifest is nested too deeply") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(path, "format", "it is not an OnTheFly session bundle (unknown manifest format)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(path, "version", f"its format version {version!r} is unknown to this onthefly, "
                                           f"which reads version {FORMAT_VERSION}; upgrade onthefly to import it")
    try:
        validate.manifest(manifest)
    except InvalidArgument as exc:
        raise BundleError(path, "format", str(exc)) from None
    files: dict[str, dict[str, Any]] = {}
    spans = []
    for entry in manifest.get("files", []):
        if not isinstance(entry, dict):
            raise BundleError(path, "format", "its manifest has a malformed file entry")
        rel = safe_path(path, entry.get("path", ""))
        try:
            start = validate.count(entry.get("offset"), f"the manifest entry for '{clip(rel, 80)}': offset")
            count = validate.count(entry.get("size"), f"the manifest entry for '{clip(rel, 80)}': size")
        except InvalidArgument as exc:
            raise BundleError(path, "format", str(exc)) from None
        if digest.recorded(entry) is None:
            raise BundleError(path, "format", f"the manifest entry for '{rel}' has no checksum")
        if rel in files:
            raise BundleError(path, "format", f"the manifest lists '{rel}' twice")
        if start < len(MAGIC) or count < 0 or start + count > offset:
            raise BundleError(path, "truncated", f"'{rel}' lies outside the file's data: the bundle is truncated "
                                                 "or damaged")
        files[rel] = dict(entry, path=rel, offset=start, size=count)
        spans.append((start, start + count, rel))
    spans.sort()
    for (a0, a1, ra), (b0, b1, rb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise BundleError(path, "format", f"'{ra}' and '{rb}' overlap: the bundle is damaged")
    resume = manifest.get("resume_checkpoint")
    if not isinstance(resume, str):
        raise BundleError(path, "format", "its manifest names no checkpoint to resume from")
    safe_path(path, resume)
    for entry in manifest.get("checkpoints", []):
        safe_path(path, str(entry.get("dir", "")))
    return manifest, files
