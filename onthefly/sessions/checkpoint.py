"""Capture and restore everything a training loop needs to continue exactly where it stopped.

A checkpoint is two files: ``tensors.pt`` (a flat ``{key: tensor}`` dict written with ``torch.save``)
and ``state.json`` (everything else, as plain JSON, referring to tensors by key). ``state.json`` is
written last and names the tensors file's size and checksum, so a checkpoint whose ``state.json``
exists is complete. Loading uses ``torch.load(weights_only=True)`` only.

What is captured: model, optimizer, scheduler and AMP scaler state; step, epoch and batch in epoch;
RNG states (Python, NumPy, torch CPU and CUDA, the DataLoader's generators) both now and at the start
of the current epoch's sampling (how the data order is replayed); metric history; lineage.

A distributed run's checkpoint (rank 0 writes it) also holds every rank's RNG states (``rng.ranks``,
by rank: each rank resumes with its own), and for a model sharded across ranks (FSDP) the full model
and optimizer state gathered with torch.distributed.checkpoint (``layout: full_state_dict``; the
optimizer state keyed by parameter name), which every rank shards again on resume.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.sessions import codec, validate
from onthefly.sessions.atomic import atomic_writer
from onthefly.sessions import digest

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.sessions.store import SessionFolder

FORMAT = "onthefly-checkpoint"
VERSION = 1
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.pt"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a listing shows about one checkpoint."""

    checkpoint_id: str
    step: int
    epoch: int
    batch_in_epoch: int
    reason: str
    label: str
    created_unix: float
    size_bytes: int


@dataclass
class Checkpoint:
    """A checkpoint in memory: ``doc`` is the state.json document, ``tensors`` what it refers to."""

    doc: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def info(self) -> CheckpointInfo:
        return info_of(self.doc)

    def state(self) -> dict[str, Any]:
        """The decoded state tree (state dicts, RNG states, metric history)."""
        return codec.decode(self.doc["state"], self.tensors)


def info_of(doc: dict[str, Any]) -> CheckpointInfo:
    pos = doc["position"]
    return CheckpointInfo(doc["checkpoint_id"], int(pos["step"]), int(pos["epoch"]), int(pos["batch_in_epoch"]),
                          doc.get("reason", ""), doc.get("label", ""), float(doc.get("created_unix", 0.0)),
                          int(doc.get("tensors", {}).get("size", 0)))


def _class_name(obj: Any) -> str | None:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def capture(ctx: "LoopContext", *, checkpoint_id: str, reason: str, label: str = "",
            rng_now: dict[str, Any], rng_epoch_start: dict[str, Any] | None,
            metric_history: dict[str, Any] | None, lineage: list[dict[str, Any]], whole: Any = None) -> Checkpoint:
    """Capture the loop's state now (on the training thread, at a step boundary or after fit).
    ``whole``: what rank 0 of a distributed run gathered from every rank (a ``Gathered``), or None."""
    model_state, optimizer_state, layout = _model_and_optimizer(ctx, whole)
    rng_tree: dict[str, Any] = {"now": rng_now, "epoch_start": rng_epoch_start}
    if whole is not None and whole.ranks is not None:
        rng_tree["ranks"] = whole.ranks
    tree = {
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": ctx.scheduler.state_dict() if ctx.scheduler is not None else None,
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
        "rng": rng_tree,
        "metrics": metric_history,
    }
    skeleton, tensors = codec.encode(tree)
    identity = ctx.run.identity
    try:
        batches = len(ctx.train_loader)
    except TypeError:
        batches = None
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint_id": checkpoint_id,
        "reason": reason,
        "label": label,
        "created_unix": time.time(),
        "position": {"step": ctx.step, "epoch": ctx.epoch, "batch_in_epoch": ctx.batch_in_epoch},
        "run": {"project": identity.project, "run_name": identity.run_name, "run_id": identity.run_id},
        "lineage": lineage,
        "components": {
            "model": _class_name(ctx.model),
            "optimizer": _class_name(ctx.optimizer),
            "scheduler": _class_name(ctx.scheduler),
            "scaler": _class_name(ctx.scaler),
        },
        "loader": {"batches_per_epoch": batches},
        "state": skeleton,
    }
    if layout:
        doc["layout"] = layout
    return Checkpoint(doc, tensors)


def _model_and_optimizer(ctx: "LoopContext", whole: Any) -> tuple[dict, dict, str]:
    """(model state, optimizer state, layout): the gathered full state of a sharded model, else the
    loop's own state dicts (layout "")."""
    from onthefly.distributed.sharded import FULL_LAYOUT, gather_full_state, is_sharded

    if whole is not None and whole.model is not None:
        return whole.model, whole.optimizer, FULL_LAYOUT
    if is_sharded(ctx.model):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from onthefly.distributed.gather import NOT_AT_A_SHARED_STEP

            raise FailedPrecondition(NOT_AT_A_SHARED_STEP)
        model_state, optimizer_state = gather_full_state(ctx.model, ctx.optimizer)  # one rank: no peer to wait for
        return model_state, optimizer_state, FULL_LAYOUT
    return ctx.model.state_dict(), ctx.optimizer.state_dict(), ""


# -- files -----------------------------------------------------------------------------------------
def write_tensors(f, tensors: dict[str, torch.Tensor], durable: bool = False) -> tuple[int, digest.Checksum]:
    """torch.save ``tensors`` into the unbuffered binary file ``f``; returns (size, checksum).
    ``durable``: start writing back to disk while serialising (the caller fsyncs at the end)."""
    writer = digest.TensorWriter(f, writeback=durable)
    try:
        torch.save(tensors, writer)
    finally:
        size, checksum = writer.finish()
    return size, checksum


def tensors_bytes(checkpoint: Checkpoint) -> int:
    """About how many bytes ``checkpoint``'s tensor file takes."""
    return sum(t.numel() * t.element_size() for t in checkpoint.tensors.values())


def tensors_record(size: int, checksum: digest.Checksum) -> dict[str, Any]:
    """state.json's record of its tensors file."""
    return {"file": TENSORS_FILE, "size": size, **digest.as_fields(checksum)}


def save(folder: "SessionFolder", rel_dir: str, checkpoint: Checkpoint, durable: bool = True) -> CheckpointInfo:
    """Write ``checkpoint`` into ``rel_dir`` of a session folder (tensors first, state.json last)."""
    tensors_rel, state_rel = f"{rel_dir}/{TENSORS_FILE}", f"{rel_dir}/{STATE_FILE}"
    tensors_path, _ = folder.reserve(tensors_rel, state_rel)
    with atomic_writer(tensors_path, durable) as f:
        size, checksum = write_tensors(f.raw if hasattr(f, "raw") else f, checkpoint.tensors, durable)
    checkpoint.doc["tensors"] = tensors_record(size, checksum)
    folder.write_bytes(state_rel, json.dumps(checkpoint.doc, allow_nan=True).encode())
    return checkpoint.info


def parse_state(data: bytes, where: str) -> dict[str, Any]:
    """Parse and check a state.json document; InvalidArgument names what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{where} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidArgument(f"{where} is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidArgument(f"{where} is not an OnTheFly checkpoint")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise InvalidArgument(f"{where} has checkpoint format version {version!r}; this onthefly reads "
                              f"version {VERSION}: upgrade onthefly to read it")
    for key in ("checkpoint_id", "position", "state"):
        if key not in doc:
            raise InvalidArgument(f"{where} lacks '{key}'")
    validate.state_doc(doc, where)
    return doc


def load_tensors(source: Any, where: str) -> dict[str, torch.Tensor]:
    """``torch.load(source, weights_only=True)`` of a flat tensor dict; refuses anything else."""
    import pickle

    try:
        value = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument(f"{where} contains a pickle payload that is not plain tensors; refused "
                              f"without running it ({first})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise InvalidArgument(f"{where} is not a readable tensor file ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in value.items()):
        raise InvalidArgument(f"{where} does not hold a flat dict of tensors")
    return value


def load(folder: Path, verify: bool = True) -> Checkpoint:
    """Read a checkpoint folder written by ``save``."""
    where = str(folder)
    doc = parse_state((folder / STATE_FILE).read_bytes(), f"{where}/{STATE_FILE}")
    meta = doc.get("tensors") or {}
    path = folder / meta.get("file", TENSORS_FILE)
    if os.path.getsize(path) != meta.get("size"):
        raise InvalidArgument(f"{path} has {os.path.getsize(path)} bytes, but its checkpoint says {meta.get('size')}")
    expected = digest.recorded(meta)
    if verify and expected and not digest.file_matches(path, expected):
        raise InvalidArgument(f"{path} does not match its checksum: the file is damaged")
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise InvalidArgument(f"{path} is not a torch tensor archive")
    return checkpoint_from(doc, load_tensors(str(path), str(path)), where)


def checkpoint_from(doc: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> Checkpoint:
    missing = codec.tensor_keys(doc["state"]) - set(tensors)
    if missing:
        raise InvalidArgument(f"{where} refers to {len(missing)} tensor(s) its tensor file lacks")
    return Checkpoint(doc, tensors)


# -- restore ---------------------------------------------------------------------------------------
def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def check_compatible(ctx: "LoopContext", checkpoint: Checkpoint, state: dict[str, Any]) -> None:
    """FailedPrecondition, naming the difference, if ``state`` cannot be loaded into this loop."""
    comps = checkpoint.doc.get("components", {})
    current = ctx.model.state_dict()
    saved = state["model"]
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"this model has {_few(missing)} which the checkpoint lacks")
        if unexpected:
            parts.append(f"the checkpoint has {_few(unexpected)} which this model lacks")
        raise FailedPrecondition(f"the checkpoint was taken from a different model ({comps.get('model')}): "
                                 + "; ".join(parts))
    shapes = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in current.items()
              if isinstance(v, torch.Tensor) and isinstance(saved[k], torch.Tensor) and saved[k].shape != v.shape]
    if shapes:
        raise FailedPrecondition(f"the checkpoint's tensors have other shapes than this model's: {_few(shapes)}")
    if comps.get("optimizer") != _class_name(ctx.optimizer):
        raise FailedPrecondition(f"the checkpoint holds {comps.get('optimizer')} state, but fit was given "
                                 f"{_class_name(ctx.optimizer)}; pass the same optimizer class")
    from onthefly.distributed.sharded import FULL_LAYOUT, is_sharded

    if is_sharded(ctx.model) and checkpoint.doc.get("layout") != FULL_LAYOUT:
        raise FailedPrecondition("this model is sharded across ranks (FSDP), but the checkpoint's optimizer state "
                                 "was taken from an unsharded model (by position, not by parameter name); resume "
                                 "it with the model unsharded (DDP or one process)")
    groups_saved = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
    groups_now = [len(g["params"]) for g in ctx.optimizer.param_groups]
    if groups_saved != groups_now:
        raise FailedPrecondition(f"the optimizer's parameter groups differ (checkpoint {groups_saved} "
                                 f"parameters per group, this optimizer {groups_now})")
    if (state["scheduler"] is None) != (ctx.scheduler is None) or (
            ctx.scheduler is not None and comps.get("scheduler") != _class_name(ctx.scheduler)):
        raise FailedPrecondition(f"the checkpoint was taken with scheduler {comps.get('scheduler')}, but fit was "
                                 f"given {_class_name(ctx.scheduler)}; pass the same kind of scheduler")


@dataclass
class ResumePlan:
    """How the loop replays the data order: RNG at the epoch's sampling start, skip, RNG now."""

    batch_in_epoch: int
    rng_epoch_start: dict[str, Any] | None
    rng_now: dict[str, Any]


def restore(ctx: "LoopContext", checkpoint: Checkpoint, state: dict[str, Any] | None = None,
            rank: int = 0) -> ResumePlan:
    """Load ``checkpoint`` into the loop (call check_compatible first). Sets step/epoch/batch_in_epoch.
    ``rank``: this process's rank; its own RNG states are resumed when the checkpoint holds every rank's.
    With a full-state checkpoint (or a sharded model) every rank must call it at the same point."""
    from onthefly.distributed.sharded import FULL_LAYOUT, is_sharded, load_full_state

    state = checkpoint.state() if state is None else state
    if checkpoint.doc.get("layout") == FULL_LAYOUT or is_sharded(ctx.model):
        load_full_state(ctx.model, ctx.optimizer, state["model"], state["optimizer"])
    else:
        ctx.model.load_state_dict(state["model"])
        ctx.optimizer.load_state_dict(state["optimizer"])
    if ctx.scheduler is not None and state["scheduler"] is not None:
        ctx.scheduler.load_state_dict(state["scheduler"])
    if ctx.scaler is not None and state["scaler"] is not None:
        ctx.scaler.load_state_dict(state["scaler"])
    pos = checkpoint.doc["position"]
    ctx.step = ctx.run.step = int(pos["step"])
    ctx.epoch = ctx.run.epoch = int(pos["epoch"])
    ctx.batch_in_epoch = int(pos["batch_in_epoch"])
    rng = rank_rng(state["rng"], rank)
    return ResumePlan(ctx.batch_in_epoch, rng.get("epoch_start"), rng["now"])


def rank_rng(rng: dict[str, Any], rank: int) -> dict[str, Any]:
    """The RNG states ``rank`` resumes with: its own when the checkpoint holds every rank's, else rank 0's
    (a single-process checkpoint, or a distributed one taken where the other ranks could not be asked)."""
    ranks = rng.get("ranks") or []
    if 0 < rank < len(ranks):
        return ranks[rank]
    return rng
