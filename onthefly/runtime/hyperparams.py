"""Reading and changing numeric hyperparameters of optimizer param groups, with validation."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from onthefly.runtime.errors import InvalidArgument, clip

_NON_NEGATIVE = {"lr", "weight_decay", "momentum", "dampening", "eps", "initial_lr", "lr_decay", "alpha",
                 "momentum_decay", "initial_accumulator_value", "lambd", "t0", "tolerance_grad",
                 "tolerance_change", "rho"}
_AT_MOST_ONE = {"momentum", "dampening", "rho"}
_EXPONENTS = {"alpha": 100.0}  # ASGD raises a growing number to it
_POSITIVE = {"d"}  # Adafactor's clipping threshold divides by it
_NON_POSITIVE = {"beta2_decay"}  # Adafactor: a step count is raised to it
# Whole counts (LBFGS, Muon): (smallest, largest) allowed; a fractional value is refused, not rounded.
_COUNTS = {"history_size": (1, 1 << 20), "max_iter": (1, 1 << 31), "max_eval": (1, 1 << 31), "ns_steps": (1, 99)}
_EXACT_INT = 2**53  # beyond this an int key is stored as a float (torch converts it to a C double)


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


def limit(optimizer: Any, group: dict[str, Any]) -> float:
    """The largest magnitude a hyperparameter of ``group`` may take: the square root of the largest
    value of the narrowest floating dtype the step computes in (its parameters', or the
    hyperparameter tensor's), so a product of two such numbers (lr / bias correction, lr * grad) still
    converts to that dtype instead of raising mid-step."""
    dtypes = {p.dtype for p in group.get("params", []) if getattr(p, "dtype", None) is not None}
    dtypes |= {v.dtype for v in group.values() if hasattr(v, "dtype") and hasattr(v, "dim")}
    floats = [torch.finfo(d).max for d in dtypes if d.is_floating_point] or [torch.finfo(torch.float32).max]
    return math.sqrt(min(floats))


def _check_range(key: str, value: float, g: int, group: dict[str, Any], bound: float) -> None:
    if abs(value) > bound:
        raise InvalidArgument(f"{key}={value:g} is too large for param group {g}: its values must stay within "
                              f"±{bound:.3g} (the square root of the largest value its parameters' dtype holds)")
    if key in _COUNTS:
        low, high = _COUNTS[key]
        if not float(value).is_integer() or not low <= value <= high:
            raise InvalidArgument(f"{key} counts iterations: give a whole number from {low} to {high}, got {value:g}")
    if key in _POSITIVE and value <= 0:
        raise InvalidArgument(f"{key} must be > 0, got {value:g}")
    if key in _NON_POSITIVE and value > 0:
        raise InvalidArgument(f"{key} must be <= 0, got {value:g}")


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
            raise InvalidArgument(f"{clip(key, 60)}={value} is not a finite number")
        if key in _NON_NEGATIVE and value < 0:
            raise InvalidArgument(f"{key} must be >= 0, got {value}")
        if key in _AT_MOST_ONE and value > 1:
            raise InvalidArgument(f"{key} must be in [0, 1], got {value}")
        if key in _EXPONENTS and abs(value) > _EXPONENTS[key]:
            raise InvalidArgument(f"{key} is an exponent: it must be within ±{_EXPONENTS[key]:g}, got {value:g}")
        for g in targets:
            group = optimizer.param_groups[g]
            if key not in group:
                known = ", ".join(sorted(k for k, v in group.items() if _numeric(v) is not None))
                raise InvalidArgument(f"param group {g} has no hyperparameter '{clip(key, 60)}'; numeric keys "
                                      f"are: {known}")
            if _numeric(group[key]) is None:
                raise InvalidArgument(
                    f"'{key}' in param group {g} is {type(group[key]).__name__}, not a number; only numeric keys can be set"
                )
            _check_range(key, value, g, group, limit(optimizer, group))
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
            elif isinstance(old, int) and float(value).is_integer() and (key in _COUNTS or abs(value) < _EXACT_INT):
                group[key] = int(value)
            else:
                group[key] = float(value)
            if key == "lr" and scheduler is not None and hasattr(scheduler, "base_lrs"):
                if old_value:
                    scheduler.base_lrs[g] = scheduler.base_lrs[g] * (value / old_value)
                if getattr(scheduler, "_last_lr", None) is not None:
                    scheduler._last_lr[g] = value
