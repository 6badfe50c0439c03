"""Standard JSON (RFC 8259) for everything the SDK stores as JSON: no bare NaN or Infinity.

Non-finite floats are written as ``{"$float": "NaN" | "Infinity" | "-Infinity"}`` and read back as floats,
so parameters and metadata round-trip exactly. numpy scalars and arrays, tuples, sets and paths become
plain JSON values; anything else is refused with a TypeError that names the key and the type.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

FLOAT_TAG = "$float"
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return {FLOAT_TAG: "NaN"}
    return {FLOAT_TAG: "Infinity" if value > 0 else "-Infinity"}


def plain(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON-ready Python (dict/list/str/int/float/bool/None), non-finite floats tagged."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {type(k).__name__} {k!r}")
            out[k] = plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "tolist", None) is not None:  # numpy array / torch tensor
        if shape == () and item is not None:
            return plain(item(), where)
        return plain(value.tolist(), where)
    if item is not None and callable(item):  # numpy scalar
        return plain(item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serializable; pass numbers, strings, "
                    f"booleans, None, lists or dicts (convert it with str() if text is what you mean)")


def _revive(obj: dict) -> Any:
    if len(obj) == 1 and FLOAT_TAG in obj and obj[FLOAT_TAG] in _NONFINITE:
        return _NONFINITE[obj[FLOAT_TAG]]
    return obj


def dumps(value: Any, where: str = "value", indent: int | None = None) -> str:
    """Standard JSON text for ``value`` (see module docstring); raises TypeError for unsupported types."""
    return json.dumps(plain(value, where), ensure_ascii=False, allow_nan=False, indent=indent)


def loads(text: str | bytes) -> Any:
    """Parse JSON written by :func:`dumps`, turning tagged non-finite floats back into floats."""
    return json.loads(text, object_hook=_revive, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}; non-finite numbers must be written as "
                     f'{{"{FLOAT_TAG}": "{name}"}}')
