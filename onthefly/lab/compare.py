"""Compare resolutions side by side, per slice, on one held-out split, with their inference cost.

    slices = evaluation_slices(regions, x_val, embedding=embed(generalist, x_val), y=y_val, n_classes=10)
    table = compare(menu.resolutions, x_val, y_val, slices, reference=generalist)

Slices: each region the resolutions acted on (membership by the same label-free router the routed model
uses, so the split's labels never choose a slice), the rest, each class, overall, plus any named groups
the caller knows (a benchmark's ground-truth groups). The worst slice is the lowest accuracy over the
slices whose kind is in ``worst_kinds`` and which hold at least ``min_size`` samples (a three-sample slice
says nothing). Inference cost is FLOPs per sample (as ``torch.utils.flop_counter`` counts them; a routed
model counts only the experts each sample really runs) and measured time per sample, both as ratios to
one generalist, measured on the split repeated to ``TIMING_ROWS`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.runtime.errors import InvalidArgument, NotFound

KINDS = ("region", "rest", "class", "group", "overall")
TIMING_ROWS = 8192


@dataclass(frozen=True, eq=False)
class Slice:
    name: str
    kind: str
    mask: np.ndarray  # bool, one per sample of the split

    @property
    def size(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Row:
    """One resolution's scores: accuracy per slice (NaN for an empty slice), worst slice, cost, compute."""

    name: str
    accuracy: dict[str, float]
    overall: float
    worst_slice: str
    worst_accuracy: float
    flops_ratio: float
    time_ratio: float
    sample_gradients: int
    forward_samples: int
    state_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "accuracy": dict(self.accuracy), "overall": self.overall,
                "worst_slice": self.worst_slice, "worst_accuracy": self.worst_accuracy,
                "flops_ratio": self.flops_ratio, "time_ratio": self.time_ratio,
                "sample_gradients": self.sample_gradients, "forward_samples": self.forward_samples,
                "state_hash": self.state_hash}


@dataclass
class Comparison:
    """The side-by-side table: one row per resolution, one column per slice; ``best`` names each column's
    best resolution (highest accuracy; lowest cost)."""

    split: str
    slices: list[Slice]
    rows: list[Row]
    worst_kinds: tuple[str, ...]
    best: dict[str, str] = field(default_factory=dict)
    # Per resolution, whether each sample of the split was classified correctly: what the recommendation's
    # paired uncertainty (a bootstrap over the same samples) is computed from. Not part of as_dict.
    correct: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise NotFound(f"no resolution {name!r} in this comparison")

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "worst_kinds": list(self.worst_kinds),
                "slices": [{"name": s.name, "kind": s.kind, "size": s.size} for s in self.slices],
                "rows": [r.as_dict() for r in self.rows], "best": dict(self.best)}


def evaluation_slices(regions: Any, x: np.ndarray, *, embedding: np.ndarray | None, y: np.ndarray, n_classes: int,
                      region_ids: Sequence[str] | None = None, groups: dict[str, np.ndarray] | None = None,
                      class_names: Sequence[str] | None = None) -> list[Slice]:
    """The slices of one split: regions (by the router), rest, classes, overall, and the caller's groups."""
    y = np.asarray(y).reshape(-1)
    n = y.shape[0]
    slices: list[Slice] = [Slice("overall", "overall", np.ones(n, dtype=bool))]
    if regions is not None and len(regions.regions):
        wanted = set(region_ids) if region_ids is not None else {r.id for r in regions.regions}
        where = regions.assign(x if regions.space.uses_input else None,
                               embedding if regions.space.uses_embedding else None)
        acted = np.zeros(n, dtype=bool)
        for position, region in enumerate(regions.regions):
            if region.id in wanted:
                mask = where == position
                slices.append(Slice(f"region {region.id}", "region", mask))
                acted |= mask
        slices.append(Slice("rest", "rest", ~acted))
    for c in range(n_classes):
        name = class_names[c] if class_names is not None else f"class {c}"
        slices.append(Slice(name, "class", y == c))
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape[0] != n:
            raise InvalidArgument(f"group {name!r} has {mask.shape[0]} rows, the split has {n}")
        slices.append(Slice(name, "group", mask))
    return slices


def predict(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """Predicted class per sample, in eval mode without gradients; the model's mode is given back."""
    inputs = torch.as_tensor(x)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = [model(inputs[i:i + batch_size].to(device)).argmax(dim=1).cpu()
                   for i in range(0, len(inputs), batch_size)]
    finally:
        for m, mode in flags:
            m.training = mode
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def compare(resolutions: Sequence[Any], x: np.ndarray, y: np.ndarray, slices: Sequence[Slice], *,
            reference: nn.Module, split: str = "test", worst_kinds: Sequence[str] = ("region", "rest", "class"),
            min_size: int = 5, cost: bool = True, cost_repeats: int = 10) -> Comparison:
    """Score every resolution (anything with ``name``, ``model``, ``spent``, ``state_hash``) on the split."""
    bad = [k for k in worst_kinds if k not in KINDS]
    if bad:
        raise InvalidArgument(f"unknown slice kind(s) {bad}; kinds are {KINDS}")
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise InvalidArgument(f"x has {len(x)} rows but y has {len(y)}")
    xt = torch.as_tensor(x)
    # Cost is measured on the split repeated to at least TIMING_ROWS rows (the same samples, so the routed
    # fraction and the FLOPs ratio are the split's): a few hundred rows time the per-call overhead of a tiny
    # model, not its per-sample cost.
    timed = xt.repeat(-(-TIMING_ROWS // max(len(xt), 1)), *([1] * (xt.dim() - 1))) if len(xt) else xt
    rows = []
    per_sample: dict[str, np.ndarray] = {}
    for r in resolutions:
        correct = predict(r.model, xt) == y
        per_sample[r.name] = correct
        accuracy = {s.name: float(correct[s.mask].mean()) if s.size else float("nan") for s in slices}
        candidates = [(accuracy[s.name], s.name) for s in slices if s.kind in worst_kinds and s.size >= min_size]
        worst_acc, worst_name = min(candidates) if candidates else (accuracy["overall"], "overall")
        flops = time = 1.0
        if cost:
            from onthefly.lab.routing import inference_cost

            measured = inference_cost(r.model, reference, timed, repeats=cost_repeats)
            flops, time = measured.flops_ratio, measured.time_ratio
        rows.append(Row(r.name, accuracy, accuracy["overall"], worst_name, worst_acc, flops, time,
                        r.spent.sample_gradients, r.spent.forward_samples, r.state_hash))
    table = Comparison(split, list(slices), rows, tuple(worst_kinds), correct=per_sample)
    table.best = _best(table)
    return table


def _best(table: Comparison) -> dict[str, str]:
    best: dict[str, str] = {}
    if not table.rows:
        return best
    for column in [s.name for s in table.slices] + ["worst"]:
        values = [(r.worst_accuracy if column == "worst" else r.accuracy[column], r.name) for r in table.rows]
        values = [v for v in values if not np.isnan(v[0])]
        if values:
            best[column] = max(values, key=lambda v: v[0])[1]
    best["flops"] = min(table.rows, key=lambda r: r.flops_ratio).name
    return best
