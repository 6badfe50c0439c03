"""Session: one run's folder in the store, its checkpoint ring, history, lineage, export and import.

Methods that read or change the loop's state take the LoopContext and run on the training thread
(inside a command at a step boundary, in a hook, or before/after fit); listing is safe from any thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onthefly.runtime.errors import InvalidArgument, NotFound, ResourceExhausted, clip
from onthefly.sessions import checkpoint as ck
from onthefly.sessions import digest, validate
from onthefly.sessions.bundle import FORMAT_VERSION, Bundle, BundleError, BundleInfo, BundleWriter
from onthefly.sessions.history import History
from onthefly.sessions.store import SessionFolder, Store

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.events import RunIdentity

log = logging.getLogger("onthefly")

SESSION_FILE = "session.json"


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    folder: str
    lineage: list[dict[str, Any]]
    checkpoint_count: int
    metric_steps: int
    sample_loss_rows: int
    event_count: int


@dataclass
class Imported:
    """A bundle that passed every check (structure, checksums, tensors), ready to be adopted."""

    bundle: Bundle
    checkpoint: ck.Checkpoint
    state: dict[str, Any]
    source: str
    lineage: list[dict[str, Any]] = field(default_factory=list)


def lineage_entry(session_id: str, identity: "RunIdentity", origin: str, source: str = "",
                  from_step: int = 0) -> dict[str, Any]:
    return {"session_id": session_id, "project": identity.project, "run_name": identity.run_name,
            "run_id": identity.run_id, "origin": origin, "source": source, "from_step": from_step,
            "created_unix": time.time()}


def read_bundle(path: str | os.PathLike) -> Imported:
    """Open ``path`` and check all of it: structure, every checksum, the resume checkpoint's tensors
    (loaded with weights_only=True). Raises BundleError naming the problem; writes nothing."""
    bundle = Bundle.open(path)
    try:
        # The resume checkpoint's tensors are checked from the bytes loading reads (each byte read
        # once); every other file is hashed on a helper thread meanwhile.
        tensors = bundle.tensors_of(bundle.resume_dir)
        inline = bundle.checks_inline(tensors)
        verification = bundle.verify([rel for rel in bundle.files if not (inline and rel == tensors)])
        try:
            checkpoint = bundle.checkpoint(bundle.resume_dir, check=inline)
            for entry in bundle.checkpoints:  # every ring checkpoint's state.json, before any is copied
                rel = entry["dir"]
                if rel != bundle.resume_dir and f"{rel}/{ck.STATE_FILE}" in bundle.files:
                    _same_id(bundle, rel, bundle.checkpoint_doc(rel))
            _same_id(bundle, bundle.resume_dir, checkpoint.doc)
        finally:
            verification.result()
        try:
            state = checkpoint.state()
            validate.state_tree(state, "its checkpoint's state")
        except InvalidArgument as exc:
            raise BundleError(path, "format", str(exc)) from None
        except (KeyError, IndexError, ValueError, TypeError, RecursionError) as exc:
            raise BundleError(path, "format", f"its checkpoint's state cannot be decoded "
                                              f"({type(exc).__name__}: {clip(exc)})") from None
    except BaseException:
        bundle.close()
        raise
    lineage = list(bundle.session.get("lineage", []))
    return Imported(bundle, checkpoint, state, str(Path(path).expanduser().resolve()), lineage)


def no_space(exc: BaseException, needed: int, what: str, where: Path) -> BaseException:
    """``exc``, or for a full disk a ResourceExhausted that says how much room the write needed."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        size = f"{needed / 1e6:.1f} MB" if needed >= 1e6 else f"{max(1, round(needed / 1e3))} KB"
        return ResourceExhausted(f"{what} failed: no space left on device in {where} (needed ~{size})")
    return exc


def _same_id(bundle: Bundle, rel: str, doc: dict[str, Any]) -> None:
    if doc.get("checkpoint_id") != rel.partition("/")[2]:
        raise BundleError(bundle.path, "format", f"'{rel}' holds a checkpoint with another id")


class Session:
    """A session folder with its checkpoint ring (``keep`` newest), history and lineage."""

    def __init__(self, store: Store, folder: SessionFolder, identity: "RunIdentity", *, keep: int = 5,
                 record_samples: bool = True, durable: bool = True) -> None:
        if keep < 1:
            raise InvalidArgument(f"keep must be at least 1 checkpoint, got {keep}")
        self.store = store
        self.folder = folder
        self.identity = identity
        self.keep = keep
        self.durable = durable
        self.history = History(folder, folder.session_id, record_samples)
        self.lineage: list[dict[str, Any]] = [lineage_entry(folder.session_id, identity, "new")]
        # Other writers of history/ files (the lab's sample history): paused() writes what they buffer and
        # holds back new files while a bundle is written, so the export lists only complete files.
        self.history_writers: list[Any] = []
        self._ring: list[ck.CheckpointInfo] = []
        self._lock = threading.RLock()
        self._write_session_file()

    @property
    def session_id(self) -> str:
        return self.folder.session_id

    def _write_session_file(self) -> None:
        ident = self.identity
        self.folder.write_json(SESSION_FILE, {
            "session_id": self.session_id,
            "run": {"project": ident.project, "run_name": ident.run_name, "run_id": ident.run_id, "pid": ident.pid},
            "lineage": self.lineage,
        })

    # -- reading (any thread) --------------------------------------------------------------------
    def checkpoints(self) -> list[ck.CheckpointInfo]:
        """The ring, oldest first."""
        with self._lock:
            return list(self._ring)

    def info(self) -> SessionInfo:
        with self._lock:
            return SessionInfo(self.session_id, str(self.folder.path), [dict(e) for e in self.lineage],
                               len(self._ring), self.history.metric_steps, self.history.sample_rows,
                               self.history.event_count)

    def checkpoint_dir(self, checkpoint_id: str) -> Path:
        with self._lock:
            if not any(c.checkpoint_id == checkpoint_id for c in self._ring):
                known = ", ".join(c.checkpoint_id for c in self._ring) or "none yet"
                raise NotFound(f"no checkpoint '{checkpoint_id}' in this session (checkpoints: {known})")
        return self.folder.file(f"checkpoints/{checkpoint_id}")

    def load_checkpoint(self, checkpoint_id: str) -> ck.Checkpoint:
        return ck.load(self.checkpoint_dir(checkpoint_id))

    # -- checkpoints (training thread) -----------------------------------------------------------
    def capture(self, ctx: "LoopContext", reason: str, label: str, rng_now: dict, rng_epoch_start: dict | None,
                data_order: dict[str, Any], whole: Any = None) -> ck.Checkpoint:
        """``whole``: a distributed run's Gathered (every rank's RNG part, a sharded model's full state)."""
        ctx.run.bus.drain()  # the metric history includes every step published so far
        checkpoint_id = f"step{ctx.step:07d}-{secrets.token_hex(3)}"
        checkpoint = ck.capture(ctx, checkpoint_id=checkpoint_id, reason=reason, label=label, rng_now=rng_now,
                                rng_epoch_start=rng_epoch_start, metric_history=self.history.metric_state(),
                                lineage=[dict(e) for e in self.lineage], whole=whole)
        checkpoint.doc["data_order"] = data_order
        return checkpoint

    def save(self, checkpoint: ck.Checkpoint) -> ck.CheckpointInfo:
        """Write a captured checkpoint into the ring, then drop the oldest beyond ``keep``."""
        with self._lock:
            rel = f"checkpoints/{checkpoint.doc['checkpoint_id']}"
            try:
                info = ck.save(self.folder, rel, checkpoint, self.durable)
            except BaseException as exc:
                self._discard(rel)  # no partial checkpoint stays behind
                raise no_space(exc, ck.tensors_bytes(checkpoint), f"checkpoint {checkpoint.doc['checkpoint_id']}",
                               self.folder.path) from exc
            self._ring.append(info)
            while len(self._ring) > self.keep:
                self._drop(self._ring.pop(0))
        self.history.flush()
        return info

    def _discard(self, rel: str) -> None:
        present = set(self.folder.files)
        try:
            self.folder.remove(*[f for f in (f"{rel}/{ck.STATE_FILE}", f"{rel}/{ck.TENSORS_FILE}") if f in present])
        except OSError as exc:  # the manifest may not be writable either; clean() removes them later
            log.warning("onthefly: could not remove the failed checkpoint %s: %s", rel, exc)

    def _drop(self, info: ck.CheckpointInfo) -> None:
        rel = f"checkpoints/{info.checkpoint_id}"
        # state.json first: a checkpoint without it is incomplete and never listed again.
        self.folder.remove(*[f for f in (f"{rel}/{ck.STATE_FILE}", f"{rel}/{ck.TENSORS_FILE}")
                             if f in set(self.folder.files)])

    # -- export ----------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, newest: ck.Checkpoint, overwrite: bool = False) -> BundleInfo:
        """Write one bundle: every ring checkpoint, ``newest`` (the state now), history and lineage."""
        with self._lock, contextlib.ExitStack() as held:
            self.history.flush()
            for other in self.history_writers:
                held.enter_context(other.paused())
            writer = None
            try:
                writer = BundleWriter(path, overwrite, self.durable)
                try:
                    self.folder.note_partial(writer.partial)
                except OSError as exc:  # the store's disk is full: export anyway (it may be another disk)
                    log.warning("onthefly: could not record the export in progress: %s", exc)
                entries = []
                for info in self._ring:
                    rel = f"checkpoints/{info.checkpoint_id}"
                    folder = self.folder.file(rel)
                    doc = json.loads((folder / ck.STATE_FILE).read_bytes())
                    tensors = doc.get("tensors") or {}
                    writer.add_file(f"{rel}/{ck.TENSORS_FILE}", folder / ck.TENSORS_FILE, "tensors",
                                    digest.recorded(tensors))
                    writer.add_file(f"{rel}/{ck.STATE_FILE}", folder / ck.STATE_FILE, "json")
                    entries.append(_manifest_entry(rel, info))
                newest_rel = f"checkpoints/{newest.doc['checkpoint_id']}"
                size, checksum = writer.add_tensors(f"{newest_rel}/{ck.TENSORS_FILE}", newest.tensors)
                newest.doc["tensors"] = ck.tensors_record(size, checksum)
                writer.add_bytes(f"{newest_rel}/{ck.STATE_FILE}", json.dumps(newest.doc, allow_nan=True).encode())
                entries.append(_manifest_entry(newest_rel, newest.info))
                for rel in self.folder.files:
                    if rel.startswith("history/"):
                        writer.add_file(rel, self.folder.file(rel), "history")
                writer.add_bytes(SESSION_FILE, self.folder.file(SESSION_FILE).read_bytes())
                ident = self.identity
                manifest = {
                    "session": {"session_id": self.session_id, "lineage": self.lineage,
                                "run": {"project": ident.project, "run_name": ident.run_name, "run_id": ident.run_id}},
                    "resume_checkpoint": newest_rel,
                    "checkpoints": entries,
                }
                size = writer.finish(manifest)
            except BaseException as exc:
                if writer is not None:
                    writer.abort()
                target = Path(path)
                raise no_space(exc, self._export_bytes(newest), f"the export to {target}", target.parent) from exc
            finally:
                if writer is not None:
                    self.folder.forget_partial(writer.partial)
            return BundleInfo(str(writer.path), size, FORMAT_VERSION, self.session_id, newest.info.step, len(entries),
                              len(writer._files))

    def _export_bytes(self, newest: ck.Checkpoint) -> int:
        total = ck.tensors_bytes(newest)
        for rel in self.folder.files:
            if rel.startswith(("checkpoints/", "history/")):
                try:
                    total += self.folder.file(rel).stat().st_size
                except OSError:
                    pass
        return total

    # -- import ----------------------------------------------------------------------------------
    def stage_import(self, imported: Imported) -> "Staged":
        """Copy an imported bundle's ring checkpoints and history into this folder, changing nothing
        this session lists yet; ``commit_import`` adopts them, ``Staged.discard`` removes them again.
        A checkpoint id already in the ring (the same bundle imported twice) is not copied again."""
        bundle = imported.bundle
        staged = Staged(self, set(self.folder.files))
        try:
            with self._lock:
                known = {c.checkpoint_id for c in self._ring}
            for entry in bundle.checkpoints:
                rel = entry["dir"]
                checkpoint_id = rel.partition("/")[2]
                if rel == bundle.resume_dir or checkpoint_id in known:
                    continue  # the resume state is the live state now; checkpoint it to keep a copy
                names = [n for n in (ck.TENSORS_FILE, ck.STATE_FILE) if f"{rel}/{n}" in bundle.files]
                if len(names) < 2:
                    log.warning("onthefly: imported checkpoint %s is incomplete; skipped", rel)
                    continue
                for name in names:
                    staged.copy(bundle, f"{rel}/{name}")
                known.add(checkpoint_id)
                staged.ring.append(ck.info_of(bundle.checkpoint_doc(rel)))
            for rel in bundle.files:
                if rel.startswith("history/") and not rel.startswith(f"history/{self.session_id}/"):
                    staged.copy(bundle, rel)
        except BaseException:
            staged.discard()
            raise
        return staged

    def commit_import(self, staged: "Staged", imported: Imported, origin: str, from_step: int) -> None:
        """Adopt what ``stage_import`` copied: lineage, ring (oldest beyond ``keep`` dropped), metrics."""
        with self._lock:
            self.lineage = [dict(e) for e in imported.lineage] + [
                lineage_entry(self.session_id, self.identity, origin, imported.source, from_step)]
            self._ring.extend(staged.ring)
            self._ring.sort(key=lambda c: c.created_unix)
            while len(self._ring) > self.keep:
                self._drop(self._ring.pop(0))
            self.history.load_metric_state(imported.state.get("metrics"))
            self._write_session_file()

    def close(self) -> None:
        self.history.flush()
        self.folder.close()


class Staged:
    """Files an import copied into a session folder before the swap, removable if the swap fails."""

    def __init__(self, session: Session, existing: set[str]) -> None:
        self.session = session
        self.ring: list[ck.CheckpointInfo] = []
        self._existing = existing
        self._written: list[str] = []

    def copy(self, bundle: Bundle, rel: str) -> None:
        folder = self.session.folder
        if rel not in self._existing:
            self._written.append(rel)
        with folder.writer(rel, self.session.durable) as f:
            bundle.copy_file(rel, f)

    def discard(self) -> None:
        """Remove the files this import added (files the session had before stay)."""
        written = [rel for rel in self._written if rel in set(self.session.folder.files)]
        if written:
            try:
                self.session.folder.remove(*written)
            except OSError as exc:
                log.warning("onthefly: could not remove a refused import's files: %s", exc)
        self._written.clear()
        self.ring.clear()


def _manifest_entry(rel: str, info: ck.CheckpointInfo) -> dict[str, Any]:
    return {"dir": rel, "checkpoint_id": info.checkpoint_id, "step": info.step, "epoch": info.epoch,
            "batch_in_epoch": info.batch_in_epoch, "reason": info.reason, "label": info.label,
            "created_unix": info.created_unix}
