"""Session: one run's folder in the store, its checkpoint ring, history, lineage, export and import.

Methods that read or change the loop's state take the LoopContext and run on the training thread
(inside a command at a step boundary, in a hook, or before/after fit); listing is safe from any thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onthefly.runtime.errors import InvalidArgument, NotFound
from onthefly.sessions import checkpoint as ck
from onthefly.sessions import digest
from onthefly.sessions.bundle import FORMAT_VERSION, Bundle, BundleInfo, BundleWriter
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
        finally:
            verification.result()
        state = checkpoint.state()
    except BaseException:
        bundle.close()
        raise
    lineage = list(bundle.session.get("lineage", []))
    return Imported(bundle, checkpoint, state, str(Path(path).expanduser().resolve()), lineage)


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
                data_order: dict[str, Any]) -> ck.Checkpoint:
        ctx.run.bus.drain()  # the metric history includes every step published so far
        checkpoint_id = f"step{ctx.step:07d}-{secrets.token_hex(3)}"
        checkpoint = ck.capture(ctx, checkpoint_id=checkpoint_id, reason=reason, label=label, rng_now=rng_now,
                                rng_epoch_start=rng_epoch_start, metric_history=self.history.metric_state(),
                                lineage=[dict(e) for e in self.lineage])
        checkpoint.doc["data_order"] = data_order
        return checkpoint

    def save(self, checkpoint: ck.Checkpoint) -> ck.CheckpointInfo:
        """Write a captured checkpoint into the ring, then drop the oldest beyond ``keep``."""
        with self._lock:
            info = ck.save(self.folder, f"checkpoints/{checkpoint.doc['checkpoint_id']}", checkpoint, self.durable)
            self._ring.append(info)
            while len(self._ring) > self.keep:
                self._drop(self._ring.pop(0))
        self.history.flush()
        return info

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
            writer = BundleWriter(path, overwrite, self.durable)
            try:
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
            except BaseException:
                writer.abort()
                raise
            return BundleInfo(str(writer.path), size, FORMAT_VERSION, self.session_id, newest.info.step, len(entries),
                              len(writer._files))

    # -- import ----------------------------------------------------------------------------------
    def adopt(self, imported: Imported, origin: str, from_step: int) -> None:
        """Take over an imported bundle's lineage, ring checkpoints and history (copied into this folder).

        Call only after the bundle was fully checked and its state restored: this writes to the store.
        """
        bundle = imported.bundle
        with self._lock:
            self.lineage = [dict(e) for e in imported.lineage] + [
                lineage_entry(self.session_id, self.identity, origin, imported.source, from_step)]
            resume_dir = bundle.resume_dir
            for entry in bundle.checkpoints:
                rel = entry["dir"]
                if rel == resume_dir:
                    continue  # the state it holds is the live state now; checkpoint it to keep a copy
                for name in (ck.TENSORS_FILE, ck.STATE_FILE):
                    if f"{rel}/{name}" in bundle.files:
                        with self.folder.writer(f"{rel}/{name}", self.durable) as f:
                            bundle.copy_file(f"{rel}/{name}", f)
                try:
                    self._ring.append(ck.info_of(json.loads(self.folder.file(f"{rel}/{ck.STATE_FILE}").read_bytes())))
                except (OSError, ValueError, KeyError):
                    log.warning("onthefly: imported checkpoint %s is incomplete; skipped", rel)
            self._ring.sort(key=lambda c: c.created_unix)
            while len(self._ring) > self.keep:
                self._drop(self._ring.pop(0))
            for rel in bundle.files:
                if rel.startswith("history/") and not rel.startswith(f"history/{self.session_id}/"):
                    with self.folder.writer(rel, self.durable) as f:
                        bundle.copy_file(rel, f)
            self.history.load_metric_state(imported.state.get("metrics"))
            self._write_session_file()

    def close(self) -> None:
        self.history.flush()
        self.folder.close()


def _manifest_entry(rel: str, info: ck.CheckpointInfo) -> dict[str, Any]:
    return {"dir": rel, "checkpoint_id": info.checkpoint_id, "step": info.step, "epoch": info.epoch,
            "batch_in_epoch": info.batch_in_epoch, "reason": info.reason, "label": info.label,
            "created_unix": info.created_unix}
