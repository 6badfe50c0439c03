"""Stored files of one experiment: ``files/<id>/<filename>`` holds the content, ``files/<id>.json`` its
metadata (logical path, size, SHA-256, ...). The store only ever removes what it wrote there."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import BinaryIO

from onthefly.tracking import atomic, jsonsafe
from onthefly.tracking.errors import FailedPrecondition, InvalidArgument, NotFound
from onthefly.tracking.records import FileRecord

ID_RE = re.compile(r"^[0-9a-f]{14}-[0-9a-f]{8}$")
CHUNK = 1 << 20


def new_file_id() -> str:
    """A file id: creation time in microseconds and a random suffix (sorts by time)."""
    return f"{time.time_ns() // 1000:014x}-{secrets.token_hex(4)}"


def guess_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def sha256_of(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size) of a file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_id(file_id: str) -> str:
    if not isinstance(file_id, str) or not ID_RE.match(file_id):
        raise InvalidArgument(f"file id {file_id!r} is malformed (expected 14 hex digits, '-', 8 hex digits)")
    return file_id


class FileStore:
    """Files of one experiment folder. Thread-safe."""

    def __init__(self, folder: Path, durable: bool = True) -> None:
        self.folder = folder
        self.durable = durable
        self._lock = threading.Lock()

    def _content(self, record: FileRecord) -> Path:
        return self.folder / record.id / record.filename

    def put(self, record: FileRecord, source: Path, move: bool = False) -> FileRecord:
        """Store ``source`` under ``record`` (its size and checksum are verified). With ``move`` the source
        is one of our own staging copies and is renamed into place; otherwise it is copied and left alone.
        Storing an id that exists with the same checksum returns the stored record unchanged."""
        check_id(record.id)
        with self._lock:
            existing = self._load(record.id)
            if existing is not None:
                if existing.sha256 == record.sha256:
                    if move:
                        _remove_staging(source)
                    return existing
                raise FailedPrecondition(f"file id {record.id} already holds different content "
                                         f"(sha256 {existing.sha256[:12]}...); upload it under a new id")
            target = self._content(record)
            target.parent.mkdir(parents=True, exist_ok=True)
            if move:
                try:
                    os.replace(source, target)
                except OSError:  # staging copy on another file system
                    shutil.copyfile(source, target)
                    _remove_staging(source)
            else:
                tmp = target.with_name(target.name + atomic.TMP_SUFFIX)
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            digest, size = sha256_of(target)
            if digest != record.sha256 or size != record.size:
                _remove_content(target, self.folder)
                raise InvalidArgument(f"file {record.path}: content has sha256 {digest[:12]}... and {size} bytes, "
                                      f"but {record.sha256[:12]}... and {record.size} bytes were announced")
            if self.durable:
                with open(target, "rb") as f:
                    os.fsync(f.fileno())
            atomic.write_text(self.folder / f"{record.id}.json", jsonsafe.dumps(record.to_dict()),
                              durable=self.durable)
            return record

    def _load(self, file_id: str) -> FileRecord | None:
        try:
            text = (self.folder / f"{file_id}.json").read_text("utf-8")
        except FileNotFoundError:
            return None
        return FileRecord.from_dict(jsonsafe.loads(text))

    def list(self) -> list[FileRecord]:
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json") and ID_RE.match(name[:-5]):
                record = self._load(name[:-5])
                if record is not None:
                    out.append(record)
        return out

    def get(self, file_id: str) -> tuple[FileRecord, Path]:
        record = self._load(check_id(file_id))
        if record is None:
            raise NotFound(f"no file with id {file_id}")
        return record, self._content(record)

    def read_into(self, file_id: str, dest: BinaryIO) -> FileRecord:
        record, path = self.get(file_id)
        with open(path, "rb") as f:
            shutil.copyfileobj(f, dest, CHUNK)
        return record

    def update(self, file_id: str, description: str | None = None, tags: list[str] | None = None,
               metadata: dict | None = None) -> FileRecord:
        """Replace the description, tags or metadata given (None: kept) of a stored file; its bytes stay."""
        if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
            raise InvalidArgument(f"tags must be a list of strings, got {tags!r}")
        if metadata is not None and not isinstance(jsonsafe.plain(metadata, "metadata"), dict):
            raise InvalidArgument("metadata must be a dict")
        with self._lock:
            record, _ = self.get(file_id)
            if description is not None:
                record.description = str(description)
            if tags is not None:
                record.tags = list(tags)
            if metadata is not None:
                record.metadata = jsonsafe.plain(metadata, "metadata")
            record.updated_at = time.time()
            atomic.write_text(self.folder / f"{record.id}.json", jsonsafe.dumps(record.to_dict()),
                              durable=self.durable)
            return record

    def delete(self, file_id: str) -> FileRecord:
        """Remove a stored file (content and metadata) — only ever files this store put there."""
        with self._lock:
            record, path = self.get(file_id)
            _remove_content(path, self.folder)
            (self.folder / f"{record.id}.json").unlink(missing_ok=True)
            return record


def _remove_content(path: Path, folder: Path) -> None:
    """Remove stored content ``files/<id>/<name>`` and its id folder (nothing outside it)."""
    if path.parent.parent != folder or not ID_RE.match(path.parent.name):
        raise RuntimeError(f"refusing to remove {path}: not content the file store wrote")
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def _remove_staging(path: Path) -> None:
    """Remove one of our own staging copies (named ``*.staging-onthefly``)."""
    if not str(path).endswith(STAGING_SUFFIX):
        raise RuntimeError(f"refusing to remove {path}: not a staging copy the tracking SDK made")
    Path(path).unlink(missing_ok=True)


STAGING_SUFFIX = ".staging-onthefly"
