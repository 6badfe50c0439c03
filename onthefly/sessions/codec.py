"""Split nested state (state dicts, RNG states) into plain JSON plus a flat dict of tensors.

``encode`` replaces every tensor by ``{"__tensor__": key}`` and returns the tensors separately; the
JSON half carries everything else (numbers, strings, lists, tuples, dicts with any keys, numpy arrays).
The tensors are saved with ``torch.save`` as one flat ``{key: tensor}`` dict, so loading them with
``torch.load(weights_only=True)`` never needs to reconstruct anything but tensors.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import torch

from onthefly.runtime.errors import InvalidArgument

_MARKERS = ("__tensor__", "__tuple__", "__dict__", "__ndarray__", "__bytes__", "__float__")


class UnsupportedState(InvalidArgument):
    """A value in the state is neither a tensor nor plain data, so it cannot be saved safely."""


def encode(tree: Any, tensors: dict[str, torch.Tensor] | None = None, where: str = "state") -> tuple[Any, dict]:
    """(JSON-able skeleton, {key: CPU tensor}) for ``tree``."""
    out: dict[str, torch.Tensor] = {} if tensors is None else tensors
    return _enc(tree, out, where), out


def _enc(value: Any, out: dict, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(out)}"
        out[key] = value.detach().cpu() if value.device.type != "cpu" else value.detach()
        return {"__tensor__": key}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _enc(value.item(), out, where)
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, tuple):
        return {"__tuple__": [_enc(v, out, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_enc(v, out, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in value):
            return {k: _enc(v, out, f"{where}.{k}") for k, v in value.items()}
        return {"__dict__": [[_enc(k, out, where), _enc(v, out, f"{where}[{k!r}]")] for k, v in value.items()]}
    raise UnsupportedState(
        f"cannot save {where}: it holds a {type(value).__name__}, which is neither a tensor nor plain data "
        "(numbers, strings, lists, dicts); make the state_dict() of that object return plain data"
    )


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``encode``; a missing tensor key raises KeyError."""
    if isinstance(tree, list):
        return [decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1 or "__ndarray__" in tree:
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(decode(v, tensors) for v in tree["__tuple__"])
        if "__dict__" in tree:
            return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in tree["__dict__"]}
        if "__float__" in tree:
            return float(tree["__float__"])
        if "__bytes__" in tree:
            return base64.b64decode(tree["__bytes__"])
        if "__ndarray__" in tree:
            return np.asarray(tree["data"], dtype=np.dtype(tree["__ndarray__"])).reshape(tree["shape"])
    return {k: decode(v, tensors) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def tensor_keys(tree: Any) -> set[str]:
    """Every tensor key the skeleton refers to."""
    keys: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if set(node) == {"__tensor__"}:
                keys.add(node["__tensor__"])
            else:
                stack.extend(node.values())
    return keys
