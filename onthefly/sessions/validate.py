"""Type and range checks for what a bundle or a checkpoint file says about itself.

Everything read from a file a client names is checked here before any of it is used: a wrong JSON
type or an absurd number becomes an ``InvalidArgument`` naming the field, never a crash later on the
training thread or an RPC that cannot encode the value.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from onthefly.runtime.errors import InvalidArgument, clip

# Steps, epochs and batch positions fit a JSON number exactly (and a JavaScript client's).
MAX_COUNT = 2**53 - 1
MAX_LINEAGE = 10_000
MAX_TEXT = 4096
CHECKPOINTS_DIR = "checkpoints"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
          int: "an integer", float: "a number"}


def _type_name(kind: type) -> str:
    return _NAMES.get(kind, kind.__name__)


def of_type(value: Any, kind: type | tuple, where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidArgument(f"{where} must be {_type_name(kinds[0])}, not {_type_name(type(value))}")
    return value


def count(value: Any, where: str) -> int:
    """A step, epoch or position: an integer in [0, 2**53)."""
    of_type(value, int, where)
    if not 0 <= value <= MAX_COUNT:
        raise InvalidArgument(f"{where} is {clip(value, 40)}; it must be between 0 and {MAX_COUNT}")
    return value


def number(value: Any, where: str) -> float:
    of_type(value, (float, int), where)
    if not math.isfinite(float(value)):
        raise InvalidArgument(f"{where} is {value}; it must be a finite number")
    return float(value)


def text(value: Any, where: str, limit: int = MAX_TEXT) -> str:
    of_type(value, str, where)
    if len(value) > limit:
        raise InvalidArgument(f"{where} is {len(value)} characters long; at most {limit} are allowed")
    return value


def checkpoint_id(value: Any, where: str) -> str:
    of_type(value, str, where)
    if not _ID.fullmatch(value):
        raise InvalidArgument(f"{where} '{clip(value, 60)}' is not a checkpoint id (letters, digits, '.', '_', "
                              "'-'; at most 128)")
    return value


def checkpoint_dir(value: Any, where: str) -> str:
    """A checkpoint's folder: ``checkpoints/<id>``, nothing else (never a session's own files)."""
    of_type(value, str, where)
    head, _, name = value.partition("/")
    if head != CHECKPOINTS_DIR or not _ID.fullmatch(name):
        raise InvalidArgument(f"{where} '{clip(value, 60)}' is not a checkpoint folder (checkpoints/<id>)")
    return value


def position(value: Any, where: str) -> dict[str, int]:
    of_type(value, dict, where)
    for key in ("step", "epoch", "batch_in_epoch"):
        if key not in value:
            raise InvalidArgument(f"{where} lacks '{key}'")
        count(value[key], f"{where}.{key}")
    return value


def lineage(value: Any, where: str) -> list[dict[str, Any]]:
    of_type(value, list, where)
    if len(value) > MAX_LINEAGE:
        raise InvalidArgument(f"{where} has {len(value)} entries; at most {MAX_LINEAGE} are allowed")
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        of_type(entry, dict, at)
        for key in ("session_id", "project", "run_name", "run_id", "origin", "source"):
            if key in entry:
                text(entry[key], f"{at}.{key}")
        if "from_step" in entry:
            count(entry["from_step"], f"{at}.from_step")
        if "created_unix" in entry:
            number(entry["created_unix"], f"{at}.created_unix")
    return value


def manifest(body: dict[str, Any]) -> None:
    """The bundle manifest's own fields (the file table is checked where it is read)."""
    of_type(body.get("files", []), list, "the manifest's 'files'")
    checkpoints = of_type(body.get("checkpoints", []), list, "the manifest's 'checkpoints'")
    checkpoint_dir(body.get("resume_checkpoint"), "the manifest's 'resume_checkpoint'")
    seen = set()
    for i, entry in enumerate(checkpoints):
        at = f"the manifest's checkpoints[{i}]"
        of_type(entry, dict, at)
        rel = checkpoint_dir(entry.get("dir"), f"{at}.dir")
        if rel in seen:
            raise InvalidArgument(f"{at}.dir '{rel}' is listed twice")
        seen.add(rel)
        if "checkpoint_id" in entry and entry["checkpoint_id"] != rel.partition("/")[2]:
            raise InvalidArgument(f"{at}.checkpoint_id does not match its folder '{rel}'")
        for key in ("step", "epoch", "batch_in_epoch"):
            if key in entry:
                count(entry[key], f"{at}.{key}")
    session = of_type(body.get("session", {}), dict, "the manifest's 'session'")
    lineage(session.get("lineage", []), "the manifest's session.lineage")
    if "session_id" in session:
        text(session["session_id"], "the manifest's session.session_id", 256)


def state_doc(doc: dict[str, Any], where: str) -> None:
    """A checkpoint's state.json (its format and version already checked)."""
    checkpoint_id(doc.get("checkpoint_id"), f"{where} checkpoint_id")
    position(doc.get("position"), f"{where} position")
    of_type(doc.get("state"), dict, f"{where} state")
    tensors = of_type(doc.get("tensors", {}), dict, f"{where} tensors")
    if "file" in tensors and not _ID.fullmatch(of_type(tensors["file"], str, f"{where} tensors.file")):
        raise InvalidArgument(f"{where} tensors.file must be a plain file name")
    if "size" in tensors:
        count(tensors["size"], f"{where} tensors.size")
    for key in ("reason", "label"):
        if key in doc:
            text(doc[key], f"{where} {key}")
    if "created_unix" in doc:
        number(doc["created_unix"], f"{where} created_unix")
    of_type(doc.get("components", {}), dict, f"{where} components")
    of_type(doc.get("data_order", {}) or {}, dict, f"{where} data_order")
    lineage(doc.get("lineage", []), f"{where} lineage")


def _tensor_dict(value: Any, where: str) -> None:
    of_type(value, dict, where)
    for key, item in value.items():
        if not isinstance(item, torch.Tensor):
            raise InvalidArgument(f"{where}['{clip(key, 60)}'] must be a tensor, not {_type_name(type(item))}")


def _rng(value: Any, where: str) -> None:
    of_type(value, dict, where)
    for key in ("python", "numpy", "torch"):
        if key not in value:
            raise InvalidArgument(f"{where} lacks '{key}'")
    if not isinstance(value["torch"], torch.Tensor) or value["torch"].dtype != torch.uint8:
        raise InvalidArgument(f"{where}.torch must be a uint8 tensor")
    of_type(value.get("cuda") or [], list, f"{where}.cuda")
    of_type(value.get("loader") or [], list, f"{where}.loader")


def state_tree(state: Any, where: str) -> None:
    """The decoded state a checkpoint restores: the shapes of things the loop will load."""
    of_type(state, dict, where)
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "metrics"):
        if key not in state:
            raise InvalidArgument(f"{where} lacks '{key}'")
    _tensor_dict(state["model"], f"{where}.model")
    optimizer = of_type(state["optimizer"], dict, f"{where}.optimizer")
    of_type(optimizer.get("state"), dict, f"{where}.optimizer.state")
    for i, group in enumerate(of_type(optimizer.get("param_groups"), list, f"{where}.optimizer.param_groups")):
        of_type(group, dict, f"{where}.optimizer.param_groups[{i}]")
        of_type(group.get("params"), list, f"{where}.optimizer.param_groups[{i}].params")
    for key in ("scheduler", "scaler"):
        if state[key] is not None:
            of_type(state[key], dict, f"{where}.{key}")
    rng = of_type(state["rng"], dict, f"{where}.rng")
    _rng(rng.get("now"), f"{where}.rng.now")
    if rng.get("epoch_start") is not None:
        _rng(rng["epoch_start"], f"{where}.rng.epoch_start")
    for rank, part in enumerate(of_type(rng.get("ranks") or [], list, f"{where}.rng.ranks")):
        of_type(part, dict, f"{where}.rng.ranks[{rank}]")
        _rng(part.get("now"), f"{where}.rng.ranks[{rank}].now")
        if part.get("epoch_start") is not None:
            _rng(part["epoch_start"], f"{where}.rng.ranks[{rank}].epoch_start")
    metrics = state["metrics"]
    if metrics:
        of_type(metrics, dict, f"{where}.metrics")
        lengths = set()
        for key in ("step", "epoch", "loss", "lr", "grad_norm"):
            column = metrics.get(key)
            if not isinstance(column, torch.Tensor) or column.dim() != 1:
                raise InvalidArgument(f"{where}.metrics.{key} must be a 1-D tensor")
            lengths.add(column.numel())
        if len(lengths) > 1:
            raise InvalidArgument(f"{where}.metrics columns differ in length")
        for i, entry in enumerate(of_type(metrics.get("evals", []), list, f"{where}.metrics.evals")):
            of_type(entry, dict, f"{where}.metrics.evals[{i}]")
