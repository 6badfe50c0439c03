"""Session commands: checkpoint, export, import and restore, applied on the training thread at a
step boundary. Expensive reading (verifying a bundle, loading a checkpoint) runs in ``prepare`` on the
caller's thread before the command is queued, so the loop only pays for swapping the state in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onthefly.runtime.commands import Command
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, clip

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control
    from onthefly.sessions.hook import Sessions


MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def _absolute(path: str | os.PathLike) -> Path:
    raw = os.fspath(path)
    if not raw:
        raise InvalidArgument("give a file path")
    if "\x00" in raw:
        raise InvalidArgument(f"the path '{clip(raw.replace(chr(0), '?'))}' contains a NUL character; give a plain "
                              "file path")
    encoded = os.fsencode(raw)
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise InvalidArgument(f"the path '{clip(raw)}' is too long: file names are limited to {MAX_NAME_BYTES} "
                              f"bytes and paths to {MAX_PATH_BYTES}")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        raise InvalidArgument(f"'{clip(raw)}' is relative; give an absolute path (the trainer's working directory "
                              "may differ from yours)")
    return p


class CreateCheckpoint(Command):
    name = "checkpoint"

    def __init__(self, sessions: "Sessions", label: str = "", reason: str = "request") -> None:
        self.sessions, self.label, self.reason = sessions, label, reason

    def check(self, control: "Control") -> None:
        self.sessions.require_session()

    def apply(self, ctx: "LoopContext") -> Any:
        return self.sessions.take_checkpoint(ctx, self.reason, self.label)

    def describe(self, result: Any) -> str:
        return "" if result is None else f"checkpoint {result.checkpoint_id} at step {result.step} ({self.reason})"


class ExportSession(Command):
    name = "export"

    def __init__(self, sessions: "Sessions", path: str | os.PathLike, overwrite: bool = False) -> None:
        self.sessions, self.overwrite = sessions, overwrite
        self.path = _absolute(path)

    def check(self, control: "Control") -> None:
        self.sessions.require_session()
        if self.path.exists() and not self.overwrite:
            raise FailedPrecondition(f"{self.path} already exists; choose another path or allow overwriting it")
        if self.path.exists() and not self.path.is_file():
            raise FailedPrecondition(f"{self.path} exists and is not a regular file (a folder, FIFO or device); "
                                     "choose another path")
        if not self.path.parent.is_dir():
            raise NotFound(f"cannot export to {self.path}: the folder {self.path.parent} does not exist")

    def apply(self, ctx: "LoopContext") -> Any:
        return self.sessions.export_now(ctx, self.path, self.overwrite)

    def describe(self, result: Any) -> str:
        return f"exported step {result.step} to {result.path} ({result.size_bytes} bytes)"


class ImportSession(Command):
    name = "import"

    def __init__(self, sessions: "Sessions", path: str | os.PathLike) -> None:
        self.sessions = sessions
        self.path = _absolute(path)
        self.imported = None

    def prepare(self) -> None:
        """Read and verify the whole bundle (call on the caller's thread before submitting)."""
        from onthefly.sessions.session import read_bundle

        if self.imported is None:
            self.sessions.require_session()
            self.sessions.check_live_restore()
            try:
                self.imported = read_bundle(self.path)
            except OSError as exc:  # (BundleError is not one) the file opened but a read failed: EIO, ...
                raise FailedPrecondition(f"cannot import {clip(self.path)}: reading it failed "
                                         f"({exc.strerror or type(exc).__name__}); the disk or file system "
                                         "reports an error: copy the bundle to a healthy disk and import the "
                                         "copy") from None

    def check(self, control: "Control") -> None:
        self.prepare()
        try:
            self.sessions.check_compatible(control.ctx, self.imported)
        except BaseException:
            self.imported.bundle.close()
            raise

    def apply(self, ctx: "LoopContext") -> Any:
        try:
            return self.sessions.adopt(ctx, self.imported, "imported")
        finally:
            self.imported.bundle.close()

    def describe(self, result: Any) -> str:
        return f"imported {self.path}: continuing from step {result.step}"


class RestoreCheckpoint(Command):
    name = "restore"

    def __init__(self, sessions: "Sessions", checkpoint_id: str) -> None:
        self.sessions, self.checkpoint_id = sessions, checkpoint_id
        self.checkpoint = None

    def prepare(self) -> None:
        """Load and verify the checkpoint (call on the caller's thread before submitting)."""
        if not self.checkpoint_id:
            raise InvalidArgument("give the id of the checkpoint to restore (see ListCheckpoints)")
        if self.checkpoint is None:
            session = self.sessions.require_session()
            self.sessions.check_live_restore()
            self.checkpoint = session.load_checkpoint(self.checkpoint_id)

    def check(self, control: "Control") -> None:
        self.prepare()
        self.sessions.check_compatible(control.ctx, self.checkpoint)

    def apply(self, ctx: "LoopContext") -> Any:
        return self.sessions.restore_checkpoint(ctx, self.checkpoint)

    def describe(self, result: Any) -> str:
        return f"restored checkpoint {result.checkpoint_id}: continuing from step {result.step}"
