"""Activations: dead ReLU units and saturated sigmoid/tanh units over a few probe batches.

Forward hooks go on activation modules for the probe only and are removed afterwards, whatever
happens. Units are the channel dimension (dim 1) of each activation's output; a ReLU unit is dead
when it is zero for every probe sample, a bounded unit is saturated when it sits within 1% of a bound
for at least 90% of them. Functional activations (``F.relu`` in forward) are not observed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable, held, run_model

DEAD = (nn.ReLU, nn.ReLU6)
BOUNDED = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0), nn.Hardsigmoid: (0.0, 1.0), nn.Softsign: (-1.0, 1.0)}
WARN_FRACTION = 0.25
ERROR_FRACTION = 0.5
SATURATED_SHARE = 0.9


def _bounds(module: nn.Module) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return float(module.min_val), float(module.max_val)
    for cls, bounds in BOUNDED.items():
        if isinstance(module, cls):
            return bounds
    return None


def _units(output: torch.Tensor) -> torch.Tensor:
    """Output as [positions, units] with units along dim 1 (or a single unit for 1-D outputs)."""
    if output.dim() < 2:
        return output.reshape(-1, 1)
    return output.movedim(1, -1).reshape(-1, output.shape[1])


class _Stats:
    def __init__(self, kind: str, bounds: tuple[float, float] | None) -> None:
        self.kind, self.bounds = kind, bounds
        self.alive: torch.Tensor | None = None
        self.saturated: torch.Tensor | None = None
        self.positions = 0

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return
        o = _units(output.detach().float())
        self.positions += o.shape[0]
        if self.kind == "dead":
            alive = (o > 0).any(dim=0)
            self.alive = alive if self.alive is None else (self.alive | alive)
        else:
            lo, hi = self.bounds
            tol = 0.01 * (hi - lo)
            sat = ((o <= lo + tol) | (o >= hi - tol)).sum(dim=0)
            self.saturated = sat if self.saturated is None else self.saturated + sat


def check(inp: CheckInput) -> list[Finding]:
    ctx = inp.ctx
    out = Findings("activations")
    stats: dict[str, _Stats] = {}
    handles = []
    try:
        for name, module in ctx.model.named_modules():
            bounds = _bounds(module)
            if isinstance(module, DEAD):
                stats[name] = _Stats("dead", None)
            elif bounds is not None:
                stats[name] = _Stats("saturated", bounds)
            else:
                continue
            handles.append(module.register_forward_hook(stats[name]))
        if not stats:
            out.info("no activation modules (nn.ReLU, nn.Sigmoid, nn.Tanh, ...) to observe; functional activations "
                     "like F.relu are not visible to this check")
            return out.items
        batches = inp.probe(inp.batches)
        with held(ctx), torch.no_grad():
            for batch in batches:
                run_model(ctx, batch)
    except ProbeUnavailable as exc:
        out.info(f"activations not probed: {exc}")
        return out.items
    finally:
        for handle in handles:
            handle.remove()

    samples = 0
    for name, st in stats.items():
        if st.positions == 0:
            continue
        samples = max(samples, st.positions)
        if st.kind == "dead":
            units = st.alive.numel()
            fraction = 1.0 - float(st.alive.float().mean())
            what, advice = "dead (zero for every probe sample)", ("lower the lr, check the initialisation and bias, "
                                                                 "or use LeakyReLU/GELU")
        else:
            units = st.saturated.numel()
            fraction = float((st.saturated >= SATURATED_SHARE * st.positions).float().mean())
            what, advice = "saturated (stuck at a bound, so their gradient vanishes)", (
                "normalise the inputs, lower the initial weights, or add normalisation before it")
        evidence = {"fraction": fraction, "units": units, "positions": st.positions}
        label = name or type(ctx.model).__name__
        if fraction >= ERROR_FRACTION:
            out.error(f"{fraction:.0%} of the {units} units after '{label}' are {what}; {advice}", label, **evidence)
        elif fraction >= WARN_FRACTION:
            out.warning(f"{fraction:.0%} of the {units} units after '{label}' are {what}; {advice}", label, **evidence)
    if not out.problems:
        out.info(f"no dead or saturated units in {len(stats)} activation module(s) over {len(batches)} batch(es)", "",
                 modules=len(stats), batches=len(batches), positions=samples)
    return out.items
