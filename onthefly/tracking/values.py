"""Taking what the caller passed at call time, cheaply: immutable values are kept as they are; lists,
dicts, numpy arrays and torch tensors are copied (tensors on their own device, without a sync), so that
changing them after the call does not change what gets written."""

from __future__ import annotations

from typing import Any

PLAIN = frozenset({float, int, str, bool, type(None)})


def snapshot(value: Any) -> Any:
    kind = type(value)
    if kind in PLAIN:
        return value
    if kind is list or kind is tuple:
        return [snapshot(v) for v in value]
    if kind is dict:
        return {k: snapshot(v) for k, v in value.items()}
    detach = getattr(value, "detach", None)
    if detach is not None and hasattr(value, "clone"):  # torch.Tensor
        return detach().clone()
    if hasattr(value, "shape") and hasattr(value, "copy"):  # numpy array or scalar
        return value.copy()
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return value


def snapshot_fields(fields: dict) -> dict:
    """``fields`` with every non-plain value replaced by its snapshot (modified in place and returned)."""
    for key, value in fields.items():
        if type(value) not in PLAIN:
            fields[key] = snapshot(value)
    return fields


def merged(data: Any, fields: dict, what: str) -> dict:
    """A positional dict merged with keyword fields (keywords win)."""
    if not isinstance(data, dict):
        raise TypeError(f"{what} takes a dict or keyword arguments, got {type(data).__name__}")
    out = dict(data)
    out.update(fields)
    return out
