"""Numerics: NaN/Inf in parameters, gradients, buffers and the loss; AMP overflow counts; guard trips."""

from __future__ import annotations

import math

import torch

from onthefly.health import guard as guard_mod
from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable, all_params, forward, held

MAX_LISTED = 10


def _bad(tensors: list[tuple[str, torch.Tensor]]) -> list[tuple[str, int, int, int]]:
    """(name, nan count, inf count, numel) for each floating tensor holding a NaN or Inf."""
    out = []
    for name, t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        nan, inf = torch.stack([t.isnan().sum(), t.isinf().sum()]).tolist()
        if nan or inf:
            out.append((name, int(nan), int(inf), t.numel()))
    return out


def _report(out: Findings, bad, what: str, severity_error: bool, advice: str) -> None:
    for name, nan, inf, numel in bad[:MAX_LISTED]:
        message = f"{what} {name} holds {nan} NaN and {inf} Inf of {numel} values; {advice}"
        (out.error if severity_error else out.warning)(message, name, nan_count=nan, inf_count=inf, numel=numel)
    if len(bad) > MAX_LISTED:
        out.add(out.items[-1].severity, f"... and {len(bad) - MAX_LISTED} more {what}s with NaN/Inf", "",
                count=len(bad) - MAX_LISTED)


def check(inp: CheckInput) -> list[Finding]:
    ctx, monitor = inp.ctx, inp.monitor
    out = Findings("numerics")
    params = all_params(ctx)
    with torch.no_grad():
        bad_params = _bad([(n, p.detach()) for n, p in params])
        bad_grads = _bad([(n, p.grad.detach()) for n, p in params if p.grad is not None])
        buffers = list(ctx.model.named_buffers())
        bad_buffers = _bad([(n, b) for n, b in buffers])
    amp = ctx.scaler is not None and getattr(ctx.scaler, "is_enabled", lambda: False)()
    _report(out, bad_params, "parameter", True,
            "the weights are already corrupted: restore a checkpoint (or the guard's snapshot) and lower the lr")
    if amp:
        _report(out, bad_grads, "gradient of", False,
                "with AMP the grad scaler skips such a step (an overflow); frequent overflows are reported below")
    else:
        _report(out, bad_grads, "gradient of", True,
                "the next optimizer step writes it into the weights: switch on onthefly.health.NumericsGuard, "
                "lower the lr or clip gradients")
    _report(out, bad_buffers, "buffer", True, "running statistics are poisoned: look for inputs with NaN/Inf")

    if monitor is not None and monitor.steps_seen:
        if not math.isfinite(monitor.last_loss):
            out.error(f"the loss of the last step was {monitor.last_loss}: training is diverging or an input holds "
                      "NaN/Inf; pause, lower the lr, and check the batch", "loss",
                      last_loss=monitor.last_loss, nonfinite_losses=monitor.nonfinite_losses)
        elif monitor.nonfinite_losses:
            out.warning(f"{monitor.nonfinite_losses} recent step(s) had a NaN/Inf loss", "loss",
                        nonfinite_losses=monitor.nonfinite_losses)
    else:
        try:
            batch = inp.probe(1)[0]
            with held(ctx), torch.no_grad():
                loss = float(forward(ctx, batch).loss.detach().float())
            if not math.isfinite(loss):
                out.error(f"the loss on a training batch is {loss} before any step: check the inputs and the "
                          "model's initialisation", "loss", probe_loss=loss)
        except ProbeUnavailable as exc:
            out.info(f"loss not probed: {exc}", "loss")

    if amp and monitor is not None and monitor.amp_steps:
        overflows = monitor.overflow_count()
        steps = monitor.amp_steps
        scale = float(ctx.scaler.get_scale())
        rate = overflows / steps
        if steps >= 20 and rate > 0.05:
            out.warning(f"AMP overflowed on {overflows} of {steps} steps ({rate:.0%}): each overflow skips a step; "
                        "look for exploding activations or try bf16", "grad_scaler",
                        overflows=overflows, steps=steps, scale=scale)
        else:
            out.info(f"AMP overflowed on {overflows} of {steps} steps", "grad_scaler",
                     overflows=overflows, steps=steps, scale=scale)

    guard = guard_mod.guard_of(ctx)
    if guard is not None and guard.trips:
        last = guard.last_trip
        out.warning(f"the numerics guard skipped {guard.trips} step(s), last at step {last.step} ({last.reason})",
                    "guard", trips=guard.trips, last_step=last.step)

    if not out.problems:
        tensors = len(params) + len(buffers)
        out.info(f"no NaN or Inf in {len(params)} parameters, their gradients, {len(buffers)} buffers or the loss", "",
                 tensors=tensors)
    return out.items
