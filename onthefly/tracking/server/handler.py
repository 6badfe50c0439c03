"""What the tracking service does, with its access rules, independent of gRPC.

A user writes only experiments whose prefix starts with their name; a user reads their own experiments
and those whose owner marked them shared. Every method takes the authenticated user first and raises the
SDK's domain errors (the servicer maps them to status codes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa

from onthefly.tracking import names
from onthefly.tracking.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from onthefly.tracking.filestore import CHUNK, STAGING_SUFFIX, check_id, new_file_id
from onthefly.tracking.records import (AppendResult, ExperimentRecord, FileRecord, OpenSpec, Status, StreamInfo,
                                       StreamKind)
from onthefly.tracking.server.tokens import TokenStore
from onthefly.tracking.store import LocalStore

PAGE_ROWS = 100_000
MAX_UPLOAD_CHUNK = 4 << 20
MAX_UPLOAD_BYTES = 1 << 30  # default largest file one upload may store (start_tracking_server(max_upload_bytes=))


class TrackingHandler:
    """Access-controlled operations on one local store."""

    def __init__(self, store: LocalStore, tokens: TokenStore, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 quota_bytes: int | None = None) -> None:
        """``max_upload_bytes``: the largest file one upload may store; ``quota_bytes``: the most file
        bytes one user may store in all (None: no quota)."""
        self.store, self.tokens = store, tokens
        self.max_upload_bytes, self.quota_bytes = max_upload_bytes, quota_bytes

    # access --------------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> str:
        if not token:
            raise Unauthenticated("missing token: send metadata 'authorization: Bearer <token>' (get a token from the "
                                  "server's operator: `onthefly token create --user NAME`, then `onthefly login`)")
        user = self.tokens.user_for(token)
        if user is None:
            raise Unauthenticated("unknown or revoked token: ask the server's operator for a new one "
                                  "(`onthefly token create --user NAME`) and run `onthefly login` again")
        return user

    def _check_write(self, user: str, prefix: str) -> str:
        prefix = names.normalize_prefix(prefix)
        owner = names.owner_of(prefix)
        if owner != user:
            raise PermissionDenied(f"{user} may not write {prefix!r}: it belongs to {owner}; write under "
                                   f"'{user}/...' instead")
        return prefix

    def _check_read(self, user: str, prefix: str) -> ExperimentRecord:
        """The record, if ``user`` may read it. Another user's unshared experiment answers exactly as a
        missing one does, so that no one learns which experiments of others exist."""
        prefix = names.normalize_prefix(prefix)
        hidden = NotFound(f"no experiment {prefix!r} that {user} may read (it does not exist, or it belongs to "
                          "another user who has not shared it)")
        try:
            record = self.store.get_experiment(prefix)
        except NotFound:
            raise hidden from None
        if record.owner != user and not record.shared:
            raise hidden
        return record

    # experiments ---------------------------------------------------------------------------------------
    def open_experiment(self, user: str, spec: OpenSpec) -> tuple[ExperimentRecord, bool]:
        spec.prefix = self._check_write(user, spec.prefix)
        return self.store.open_experiment(spec)

    def set_status(self, user: str, prefix: str, status: Status, error: str = "", note: str = "") -> ExperimentRecord:
        prefix = self._check_write(user, prefix)
        if status is None:
            raise InvalidArgument("status must be RUNNING, COMPLETED, FAILED or CANCELLED")
        return self.store.set_status(prefix, status, error, note)

    def get_experiment(self, user: str, prefix: str) -> tuple[ExperimentRecord, list[StreamInfo], int]:
        record = self._check_read(user, prefix)
        return record, self.store.streams(record.prefix), len(self.store.list_files(record.prefix))

    def list_experiments(self, user: str, under: str = "") -> list[ExperimentRecord]:
        return [r for r in self.store.list_experiments(under) if r.owner == user or r.shared]

    def set_params(self, user: str, prefix: str, values: dict) -> dict:
        return self.store.set_params(self._check_write(user, prefix), values)

    def get_params(self, user: str, prefix: str) -> dict:
        return self.store.get_params(self._check_read(user, prefix).prefix)

    # streams -------------------------------------------------------------------------------------------
    def append(self, user: str, prefix: str, kind: StreamKind, name: str, table: pa.Table,
               replace: bool = False) -> AppendResult:
        return self.store.append(self._check_write(user, prefix), kind, name, table, replace)

    def read(self, user: str, prefix: str, kind: StreamKind, name: str, start: int = 0, limit: int = 0,
             start_time: float | None = None, end_time: float | None = None) -> tuple[pa.Table, int]:
        record = self._check_read(user, prefix)
        limit = PAGE_ROWS if not limit or limit <= 0 else min(int(limit), PAGE_ROWS)
        return self.store.read(record.prefix, kind, name, start, limit, start_time, end_time)

    def streams(self, user: str, prefix: str, kind: StreamKind | None = None) -> list[StreamInfo]:
        return self.store.streams(self._check_read(user, prefix).prefix, kind)

    # files ---------------------------------------------------------------------------------------------
    def upload(self, user: str, header: FileRecord, prefix: str, chunks: Iterable[bytes]) -> FileRecord:
        """Receive a file into a staging copy, verify size and checksum, store it."""
        prefix = self._check_write(user, prefix)
        self.store.get_experiment(prefix)
        header.id = check_id(header.id) if header.id else new_file_id()
        header.path = names.normalize_file_path(header.path)
        self._check_room(user, header)
        staged = self.store.staging_dir() / f"{header.id}-{os.getpid()}{STAGING_SUFFIX}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(staged, "wb") as f:
                for chunk in chunks:
                    if len(chunk) > MAX_UPLOAD_CHUNK:
                        raise InvalidArgument(f"upload chunks must be at most {MAX_UPLOAD_CHUNK} bytes")
                    size += len(chunk)
                    if size > header.size:  # refused at once, not after reading the rest
                        raise InvalidArgument(f"upload of {header.path} sent more than the {header.size} bytes "
                                              "it announced; send it again with its real size")
                    digest.update(chunk)
                    f.write(chunk)
            if size != header.size or digest.hexdigest() != header.sha256:
                raise InvalidArgument(f"upload of {header.path} arrived with {size} bytes and sha256 "
                                      f"{digest.hexdigest()[:12]}..., but {header.size} bytes and "
                                      f"{header.sha256[:12]}... were announced; send it again")
            return self.store.put_file(prefix, header, staged)
        finally:
            if staged.exists():
                staged.unlink()

    def _check_room(self, user: str, header: FileRecord) -> None:
        if not isinstance(header.size, int) or header.size < 0:
            raise InvalidArgument(f"upload of {header.path}: its size must be a whole number of bytes >= 0")
        if header.size > self.max_upload_bytes:
            raise ResourceExhausted(f"upload of {header.path} is {header.size} bytes; this server stores files of "
                                    f"at most {self.max_upload_bytes} bytes (its operator sets max_upload_bytes)")
        if self.quota_bytes is not None:
            used = self.bytes_stored(user)
            if used + header.size > self.quota_bytes:
                raise ResourceExhausted(f"{user} stores {used} bytes of files; {header.path} ({header.size} bytes) "
                                        f"would pass the quota of {self.quota_bytes} bytes: delete files you no "
                                        "longer need, or ask the server's operator for more")

    def bytes_stored(self, user: str) -> int:
        """Bytes of files stored in ``user``'s experiments."""
        return sum(f.size for r in self.store.list_experiments() if r.owner == user
                   for f in self.store.list_files(r.prefix))

    def list_files(self, user: str, prefix: str) -> list[FileRecord]:
        return self.store.list_files(self._check_read(user, prefix).prefix)

    def download(self, user: str, prefix: str, file_id: str) -> tuple[FileRecord, Iterator[bytes]]:
        record = self._check_read(user, prefix)
        meta, path = self.store.open_file(record.prefix, file_id)
        return meta, _chunks(path)

    def delete_file(self, user: str, prefix: str, file_id: str) -> FileRecord:
        return self.store.delete_file(self._check_write(user, prefix), file_id)


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk

