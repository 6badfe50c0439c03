"""Reading and changing numeric hyperparameters of optimizer param groups, with validation."""

from __future__ import annotations

import math
from typing import Any, Iterable

from onthefly.runtime.errors import InvalidArgument

_NON_NEGATIVE = {"lr", "weight_decay", "momentum", "dampening", "eps", "initial_lr", "lr_decay", "alpha"}
_AT_MOST_ONE = {"momentum", "dampening"}


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "dim") and value.dim() == 0 and value.dtype.is_floating_point:
        return float(value.item())
    return None


def read_groups(optimizer: Any) -> list[tuple[int, dict[str, float]]]:
    """(group index, {numeric key: value}) for every param group."""
    out = []
    for i, group in enumerate(optimizer.param_groups):
        values = {}
        for key, value in group.items():
            if key == "params":
                continue
            num = _numeric(value)
            if num is not None:
                values[key] = num
        out.append((i, values))
    return out


def validate(optimizer: Any, values: dict[str, float], groups: Iterable[int]) -> list[int]:
    """Raise InvalidArgument naming the fix; return the group indices to change."""
    if not values:
        raise InvalidArgument("no hyperparameters given: pass at least one, e.g. lr=0.01")
    n = len(optimizer.param_groups)
    targets = sorted(set(groups)) if groups else list(range(n))
    for g in targets:
        if not 0 <= g < n:
            raise InvalidArgument(f"param group {g} does not exist: the optimizer has groups 0..{n - 1}")
    for key, value in values.items():
        if not math.isfinite(value):
            raise InvalidArgument(f"{key}={value} is not a finite number")
        if key in _NON_NEGATIVE and value < 0:
            raise InvalidArgument(f"{key} must be >= 0, got {value}")
        if key in _AT_MOST_ONE and value > 1:
            raise InvalidArgument(f"{key} must be in [0, 1], got {value}")
        for g in targets:
            group = optimizer.param_groups[g]
            if key not in group:
                known = ", ".join(sorted(k for k, v in group.items() if _numeric(v) is not None))
                raise InvalidArgument(f"param group {g} has no hyperparameter '{key}'; numeric keys are: {known}")
            if _numeric(group[key]) is None:
                raise InvalidArgument(
                    f"'{key}' in param group {g} is {type(group[key]).__name__}, not a number; only numeric keys can be set"
                )
    return targets


def apply(optimizer: Any, values: dict[str, float], targets: list[int], scheduler: Any = None) -> None:
    """Set the values. If a scheduler tracks base_lrs, rescale them so the schedule continues from the new lr."""
    for g in targets:
        group = optimizer.param_groups[g]
        for key, value in values.items():
            old = group[key]
            old_value = _numeric(old)
            if hasattr(old, "fill_"):
                old.fill_(value)
            elif isinstance(old, int) and float(value).is_integer():
                group[key] = int(value)
            else:
                group[key] = float(value)
            if key == "lr" and scheduler is not None and hasattr(scheduler, "base_lrs"):
                if old_value:
                    scheduler.base_lrs[g] = scheduler.base_lrs[g] * (value / old_value)
                if getattr(scheduler, "_last_lr", None) is not None:
                    scheduler._last_lr[g] = value
