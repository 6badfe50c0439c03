"""Low-rank adapters (LoRA, rank 4) trained per region, then fused into one model or gated by the router.

Entry point for ``resolutions.py``::

    result = adapter_merge(generalist, [region.indices for region in acted], optimizer=generalist_optimizer,
                           data=source, train_indices=train, ledger=Ledger(E), seed=seed, loss_fn=loss_fn)
    # -> MergeResult; spends exactly ledger.remaining (or budget=): the adapters are the specialists here

Every ``nn.Linear`` of a copy of the generalist gets a trainable ``B @ A`` beside its frozen weight (A: rank x
in, Kaiming-uniform like ``nn.Linear``; B: out x rank, zeros, so training starts exactly at the generalist).
One adapter set per region is trained on the region with ``replay_fraction`` of each batch from the rest
(a fused adapter acts on every input, so the rest must be guarded). Adapter steps are charged as full
sample-gradients (conservative; the protocol's rule). The optimizer is the generalist's class and
hyperparameters with fresh state (the adapter weights are new parameters) and ``LR_SCALE`` times its
learning rate (``lr=`` sets it): low-rank adapters are usually trained at several times a full
fine-tune's rate, and at the generalist's own rate they barely moved (digits-shift validation, fused,
replay 0.5: worst group 54% on average over seeds 201-205 against 80% at 10x).

The defaults (replay 0.7, 20x) were chosen on VALIDATION data with ``benchmarks/bench_lab_adapters.py``
(seeds 201-205, E = 0.5 x base; points against continuing the generalist, overall / worst group):
replay 0.5 at 10x: digits-shift -2.1 / +28.5, mixture -0.0 / +15.3, imbalanced -3.0 / -5.0;
replay 0.6 at 20x: +0.8 / +26.3, +0.1 / +13.9, -1.7 / +0.0; replay 0.7 at 20x: +3.3 / +23.0, -0.1 / +10.4,
+1.0 / +5.6: the only setting within 0.1 point of continuing overall, or better, on all three.

- ``mode="fused"``: every region's ``B @ A`` is added into the generalist's weights: one plain model of the
  user's architecture, one model's inference cost.
- ``mode="gated"``: region ``r``'s expert is the generalist plus its own adapter, and the label-free router
  of ``regions`` (a RegionSet) picks the expert: a ``routing.RoutedModel``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.lab.budget import Ledger
from onthefly.lab.merges.average import merge_budget
from onthefly.lab.merges.result import MergeResult, state_dict_hash
from onthefly.lab.train_steps import DataSource, clone_model, replay, train_steps
from onthefly.runtime.errors import InvalidArgument

RANK = 4
REPLAY = 0.7  # share of each adapter batch drawn from outside the region (see the module docstring)
LR_SCALE = 20.0  # adapters' learning rate over the generalist's (see the module docstring)


class LoRALinear(nn.Module):
    """``base(x) + scale * x @ A.T @ B.T`` with ``base`` frozen; ``delta_weight()`` is the low-rank update."""

    def __init__(self, base: nn.Linear, rank: int = RANK, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        w = base.weight
        a = torch.empty(rank, base.in_features, dtype=w.dtype)
        bound = 1.0 / math.sqrt(base.in_features)  # nn.Linear's kaiming_uniform(a=sqrt(5)) bound
        a.uniform_(-bound, bound, generator=generator)
        self.lora_a = nn.Parameter(a.to(w.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_b @ self.lora_a).detach() * self.scale


def add_adapters(model: nn.Module, rank: int = RANK, *, seed: int = 0) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a ``LoRALinear`` around it; freeze everything
    else. Returns the names of the adapted layers."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InvalidArgument(f"the adapter rank must be a positive integer, got {rank!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name]
    if not names:
        raise InvalidArgument(f"{type(model).__name__} has no nn.Linear layer (below the top) to put an adapter on")
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, generator=generator))
    return names


def adapter_deltas(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name (as in the un-adapted model) -> its adapter's weight update."""
    return {name: m.delta_weight() for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def fuse(generalist: nn.Module, deltas: Sequence[dict[str, torch.Tensor]],
         factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A copy of ``generalist`` with every adapter update in ``deltas`` added into its ``nn.Linear`` weights."""
    fused = clone_model(generalist, factory)
    with torch.no_grad():
        for delta in deltas:
            for name, d in delta.items():
                layer = fused.get_submodule(name)
                layer.weight.add_(d.to(layer.weight.device, layer.weight.dtype))
    return fused


def _optimizer_like(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], lr: float | None):
    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    if lr is not None:
        hyper["lr"] = lr
    elif isinstance(hyper.get("lr"), (int, float)):
        hyper["lr"] = hyper["lr"] * LR_SCALE
    return type(optimizer)([{"params": params, **hyper}], **{k: v for k, v in hyper.items() if k == "lr"})


def adapter_merge(generalist: nn.Module, region_indices: Sequence[Sequence[int] | np.ndarray], *,
                  optimizer: torch.optim.Optimizer, data: DataSource, train_indices: Sequence[int] | np.ndarray,
                  ledger: Ledger, seed: int, loss_fn: Callable[..., torch.Tensor] | None = None,
                  step_fn: Callable[..., Any] | None = None, budget: int | None = None, rank: int = RANK,
                  replay_fraction: float = REPLAY, lr: float | None = None, mode: str = "fused",
                  regions: Any = None, layer: str | None = None,
                  factory: Callable[[], nn.Module] | None = None) -> MergeResult:
    """Train one adapter set per region and fuse or gate them (see the module docstring).

    Spends exactly ``budget`` sample-gradients (default: all ``ledger`` has left), split evenly between the
    regions. ``mode="gated"`` needs ``regions``: the RegionSet whose regions ``region_indices`` hold, in order,
    or a ``routing.CentroidRouter`` sending region ``i``'s samples to expert ``i + 1``.
    The generalist is not modified.
    """
    if mode not in ("fused", "gated"):
        raise InvalidArgument(f"mode must be 'fused' or 'gated', got {mode!r}")
    if not region_indices:
        raise InvalidArgument("adapters need at least one region")
    if mode == "gated" and regions is None:
        raise InvalidArgument("gated adapters need the RegionSet to route with: pass regions=")
    spend = merge_budget(ledger, budget)
    k = len(region_indices)
    if spend < k:
        raise InvalidArgument(f"a budget of {spend} sample-gradient(s) cannot train {k} adapter set(s)")
    train = data.check_indices(np.asarray(train_indices), "the training indices")
    members = [data.check_indices(np.asarray(ix), f"region {i}'s indices") for i, ix in enumerate(region_indices)]
    rest = np.setdiff1d(train, np.concatenate(members))
    shares = [spend // k + (1 if i < spend % k else 0) for i in range(k)]
    before = ledger.spent
    deltas = []
    for i, (region, share) in enumerate(zip(members, shares)):
        model = clone_model(generalist, factory)
        add_adapters(model, rank, seed=seed + i)
        params = [p for p in model.parameters() if p.requires_grad]
        train_steps(model, _optimizer_like(optimizer, params, lr), data, replay(region, rest, replay_fraction),
                    sample_gradients=share, ledger=ledger, seed=seed + i, loss_fn=loss_fn, step_fn=step_fn,
                    label=f"adapter-{i}")
        deltas.append(adapter_deltas(model))
    if mode == "fused":
        result: nn.Module = fuse(generalist, deltas, factory)
    else:
        from onthefly.lab.routing import build_routed

        experts = [fuse(generalist, [d], factory) for d in deltas]
        result = build_routed(generalist, experts, regions, layer=layer, factory=factory)
    return MergeResult(f"adapters-{mode}", result, state_dict_hash(result), ledger.spent - before, 0,
                       {"rank": rank, "regions": k, "replay_fraction": replay_fraction, "mode": mode,
                        "adapter_sample_gradients": int(sum(shares))})
