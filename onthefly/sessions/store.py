"""The local store: one directory per project that owns everything the framework writes.

    <store>/sessions/<session id>/manifest.json   every file and folder the framework wrote here
                                 /lock            held (flock) while the session's process lives
                                 /session.json    identity and lineage
                                 /checkpoints/... /history/...

Starting a session cleans the folders of previous sessions whose process is gone, deleting only
what their manifest lists (a file the user put beside them survives, and so does its folder). A path
is added to the manifest before the file is created, so a ``kill -9`` at any moment leaves nothing
behind that a later clean does not know about.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from onthefly.runtime.errors import InvalidArgument
from onthefly.sessions.atomic import PARTIAL_SUFFIX, atomic_writer, fsync_dir, partial_path, write_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: sessions are never considered dead, so never cleaned
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("onthefly")

STORE_ENV = "ONTHEFLY_STORE"
DEFAULT_STORE_NAME = ".onthefly"
MANIFEST = "manifest.json"
LOCK = "lock"
KEEP_CRASHED = 3  # sessions of killed runs kept (with their checkpoints) when a new session cleans the store
PARTIALS = "partial-exports.json"  # absolute paths of exports being written (temporary files)
MANIFEST_FORMAT = "onthefly-session-manifest"
MANIFEST_VERSION = 1


def default_store_dir() -> Path:
    """``$ONTHEFLY_STORE`` if set, else ``./.onthefly`` in the working directory (like a log dir)."""
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_STORE_NAME


def new_session_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def safe_relative(rel: str) -> PurePosixPath:
    """``rel`` as a clean relative POSIX path; InvalidArgument if it is absolute or climbs out."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise InvalidArgument(f"'{rel}' is not a valid relative path")
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("..", ".", "") for part in rel.split("/")):
        raise InvalidArgument(f"the path '{rel}' escapes its folder")
    return path


class SessionFolder:
    """One session's folder, with its manifest. Methods are safe to call from any thread."""

    def __init__(self, path: Path, session_id: str, lock_fd: int | None) -> None:
        self.path = path
        self.session_id = session_id
        self._lock_fd = lock_fd
        self._files: set[str] = set()
        self._dirs: set[str] = set()
        self._partials: set[str] = set()
        self._ended: str | None = None  # "ok" once fit ended normally, "error" when it raised
        self._mutex = threading.RLock()

    # -- manifest --------------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "session_id": self.session_id,
                "files": sorted(self._files), "dirs": sorted(self._dirs)}
        if self._ended is not None:
            body["ended"] = self._ended
        write_bytes(self.path / MANIFEST, json.dumps(body, indent=1).encode())

    def _register(self, rels: list[str]) -> list[Path]:
        paths = []
        changed = False
        for rel in rels:
            clean = safe_relative(rel)
            for parent in reversed(clean.parents[:-1]):  # every folder between the session folder and the file
                key = str(parent)
                if key not in self._dirs:
                    self._dirs.add(key)
                    changed = True
            if str(clean) not in self._files:
                self._files.add(str(clean))
                changed = True
            paths.append(self.path / clean)
        if changed:
            self._write_manifest()
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        return paths

    @property
    def files(self) -> list[str]:
        with self._mutex:
            return sorted(self._files)

    def file(self, rel: str) -> Path:
        """Absolute path of a (registered or not) file in this folder."""
        return self.path / safe_relative(rel)

    # -- writing ---------------------------------------------------------------------------------
    def reserve(self, *rels: str) -> list[Path]:
        """List ``rels`` in the manifest (before they exist) and create their folders; returns paths."""
        with self._mutex:
            return self._register(list(rels))

    @contextlib.contextmanager
    def writer(self, rel: str, durable: bool = True) -> Iterator[BinaryIO]:
        """Write ``rel`` atomically (listed in the manifest first)."""
        (path,) = self.reserve(rel)
        with atomic_writer(path, durable) as f:
            yield f

    def write_bytes(self, rel: str, data: bytes) -> Path:
        (path,) = self.reserve(rel)
        write_bytes(path, data)
        return path

    def write_json(self, rel: str, value: Any) -> Path:
        return self.write_bytes(rel, json.dumps(value, indent=1, allow_nan=True).encode())

    def remove(self, *rels: str) -> None:
        """Delete files this session wrote (and folders left empty), then drop them from the manifest."""
        with self._mutex:
            for rel in rels:
                clean = str(safe_relative(rel))
                if clean not in self._files:
                    raise InvalidArgument(f"'{rel}' was not written by this session; it is left alone")
                _unlink(self.path / clean)
                self._files.discard(clean)
            for rel in sorted(self._dirs, key=lambda d: -d.count("/")):
                if not any(f.startswith(rel + "/") for f in self._files):
                    with contextlib.suppress(OSError):
                        os.rmdir(self.path / rel)
                    if not (self.path / rel).exists():
                        self._dirs.discard(rel)
            self._write_manifest()

    # -- exports being written outside the folder ------------------------------------------------
    def note_partial(self, path: Path) -> None:
        """Record ``path`` (an export's temporary file this session created, outside its folder) so
        that a later clean removes it if this process is killed before it is renamed or removed."""
        with self._mutex:
            self._partials.add(str(path))
            self.write_json(PARTIALS, sorted(self._partials))

    def forget_partial(self, path: Path) -> None:
        with self._mutex:
            self._partials.discard(str(path))
            try:
                self.write_json(PARTIALS, sorted(self._partials))
            except OSError as exc:  # a full disk: the stale entry only names a file that is gone
                log.warning("onthefly: could not update %s: %s", PARTIALS, exc)

    # -- lifetime --------------------------------------------------------------------------------
    def mark_ended(self, ok: bool) -> None:
        """Say in the manifest how the run ended; a session without it was killed, and a later clean
        keeps it (``keep_crashed``) instead of removing its checkpoints."""
        with self._mutex:
            self._ended = "ok" if ok else "error"
            try:
                self._write_manifest()
            except OSError as exc:
                log.warning("onthefly: could not record the end of session %s: %s", self.session_id, exc)

    def close(self) -> None:
        """Release the lock: the folder stays until a later session cleans it."""
        with self._mutex:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @property
    def closed(self) -> bool:
        return self._lock_fd is None


def _unlink(path: Path) -> None:
    for p in (path, partial_path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _try_lock(path: Path) -> int | None:
    """Open and exclusively lock ``path`` without waiting; None if another process holds it."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def read_manifest(folder: Path) -> dict | None:
    try:
        body = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        return None
    return body


class Store:
    """A store directory. ``open_session`` starts a session and cleans the dead ones before it."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root is not None else default_store_dir().resolve()
        self.sessions_dir = self.root / "sessions"

    def open_session(self, clean_previous: bool = True, keep_crashed: int | None = None) -> SessionFolder:
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        while True:
            session_id = new_session_id()
            path = self.sessions_dir / session_id
            try:
                path.mkdir()
                break
            except FileExistsError:  # same second, same random suffix: draw again
                continue
        fd = _try_lock(path / LOCK)
        if fd is not None:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        folder = SessionFolder(path, session_id, fd)
        with folder._mutex:
            folder._write_manifest()  # from here on the folder is a session another process may clean
        fsync_dir(self.sessions_dir)
        if clean_previous:
            self.clean(exclude={session_id}, keep_crashed=KEEP_CRASHED if keep_crashed is None else keep_crashed)
        return folder

    def session_folders(self) -> list[Path]:
        """Folders of all sessions in the store (oldest first), live or not."""
        if not self.sessions_dir.is_dir():
            return []
        return sorted(p for p in self.sessions_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file())

    def clean(self, exclude: set[str] = frozenset(), keep_crashed: int = KEEP_CRASHED) -> list[str]:
        """Delete what dead sessions wrote (manifest-listed paths only); returns the cleaned ids.

        A folder belongs to a session only if its own manifest names it (a copy a user made under
        another name is left alone). Sessions whose run ended normally are cleaned; the newest
        ``keep_crashed`` of those that were killed (or whose fit raised) are kept with their
        checkpoints (``crashed_sessions`` lists them), older ones are cleaned."""
        cleaned = []
        crashed = []
        for folder in self.session_folders():
            body = read_manifest(folder)
            if folder.name in exclude or body is None or body.get("session_id") != folder.name:
                continue
            fd = _try_lock(folder / LOCK)
            if fd is None:
                continue  # its process is alive (or this platform cannot tell): leave it
            os.close(fd)
            if body.get("ended") == "ok":
                if self._clean_if_dead(folder):
                    cleaned.append(folder.name)
            else:
                crashed.append(folder)
        crashed.sort(key=_started)
        for folder in crashed[:max(0, len(crashed) - keep_crashed)]:  # oldest first
            if self._clean_if_dead(folder):
                cleaned.append(folder.name)
        return cleaned

    def _clean_if_dead(self, folder: Path) -> bool:
        fd = _try_lock(folder / LOCK)
        if fd is None:
            return False
        try:
            return _clean_folder(folder)
        finally:
            os.close(fd)

    def crashed_sessions(self) -> list[Path]:
        """Folders of sessions whose process is gone without ending normally (kept for their checkpoints)."""
        out = []
        for folder in self.session_folders():
            body = read_manifest(folder)
            if body is None or body.get("session_id") != folder.name or body.get("ended") == "ok":
                continue
            fd = _try_lock(folder / LOCK) if (folder / LOCK).exists() else None
            if fd is not None:
                os.close(fd)
                out.append(folder)
        return out


def _started(folder: Path) -> tuple[int, str]:
    """When a session started (its lock file is written then; names order only to the second)."""
    try:
        return (folder / LOCK).stat().st_mtime_ns, folder.name
    except OSError:
        return 0, folder.name


def _remove_partials(folder: Path) -> None:
    """Remove the temporary files of exports a killed session was writing (only ``*.partial`` files)."""
    try:
        paths = json.loads((folder / PARTIALS).read_text())
    except (OSError, ValueError):
        return
    for raw in paths if isinstance(paths, list) else []:
        if isinstance(raw, str) and raw.endswith(PARTIAL_SUFFIX) and os.path.isabs(raw):
            with contextlib.suppress(OSError):
                if Path(raw).is_file():
                    os.unlink(raw)
                    log.info("onthefly: removed %s, left by an export that was killed", raw)


def _clean_folder(folder: Path) -> bool:
    body = read_manifest(folder)
    if body is None:
        log.warning("onthefly: %s has an unreadable manifest; leaving it alone", folder)
        return False
    _remove_partials(folder)
    for rel in body.get("files", []):
        try:
            _unlink(folder / safe_relative(rel))
        except InvalidArgument:
            log.warning("onthefly: manifest of %s lists '%s', which is outside it; skipped", folder, rel)
    for rel in sorted(body.get("dirs", []), key=lambda d: -str(d).count("/")):
        with contextlib.suppress(OSError, InvalidArgument):
            os.rmdir(folder / safe_relative(rel))
    _unlink(folder / MANIFEST)
    _unlink(folder / LOCK)
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # fails, as it should, when the user left a file of their own in it
    return True
