"""Determinism: replay one training step twice from the same batch and RNG state and compare the loss
and a hash of the gradients bit for bit; report which nondeterministic settings are on.

Between the two replays the RNGs (torch CPU/CUDA, Python, NumPy), buffers and gradients are put back
exactly, so any difference comes from the model or the kernels: a private torch.Generator, time or a
counter in forward, or nondeterministic (atomic) GPU kernels.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import torch

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable, all_params, backward, forward, held, rng_state, set_rng_state


def _settings(out: Findings, device: torch.device) -> None:
    cuda = device.type == "cuda"
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = bool(torch.backends.cudnn.benchmark)
    cudnn_det = bool(torch.backends.cudnn.deterministic)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")
    evidence = dict(deterministic_algorithms=int(deterministic), cudnn_benchmark=int(benchmark),
                    cudnn_deterministic=int(cudnn_det))
    if cuda and benchmark:
        out.warning("torch.backends.cudnn.benchmark is on: cuDNN picks kernels by timing, so results can differ "
                    "between runs; turn it off to reproduce a run", "cudnn.benchmark", **evidence)
    on = []
    if not deterministic:
        on.append("torch.use_deterministic_algorithms is off")
    if cuda and not cudnn_det:
        on.append("cudnn.deterministic is off")
    if cuda and deterministic and not cublas:
        on.append("CUBLAS_WORKSPACE_CONFIG is unset (cuBLAS needs it for deterministic results)")
    if on:
        out.info("nondeterministic settings: " + "; ".join(on) + (" (on CPU these rarely matter)" if not cuda else ""),
                 "settings", **evidence)
    else:
        out.info("deterministic settings are on", "settings", **evidence)


def _replay(ctx: Any, batch: Any, params: list) -> tuple[float, list[torch.Tensor]]:
    loss = forward(ctx, batch).loss
    backward(ctx, loss)
    grads = [p.grad.detach().float().cpu().clone() if p.grad is not None else None for _, p in params]
    return float(loss.detach().float()), grads


def _hash(grads: list[torch.Tensor | None]) -> str:
    h = hashlib.sha256()
    for g in grads:
        h.update(b"-" if g is None else g.contiguous().numpy().tobytes())
    return h.hexdigest()


def check(inp: CheckInput) -> list[Finding]:
    ctx = inp.ctx
    out = Findings("determinism")
    _settings(out, ctx.device)
    try:
        batch = inp.probe(1)[0]
        params = all_params(ctx)
        with held(ctx):
            state = rng_state(ctx.device)
            buffers = [(b, b.detach().clone()) for b in ctx.model.buffers()]
            loss_a, grads_a = _replay(ctx, batch, params)
            set_rng_state(state, ctx.device)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for _, p in params:
                p.grad = None
            loss_b, grads_b = _replay(ctx, batch, params)
    except ProbeUnavailable as exc:
        out.info(f"no step replayed: {exc}")
        return out.items

    hash_a, hash_b = _hash(grads_a), _hash(grads_b)
    same_loss = loss_a == loss_b or (math.isnan(loss_a) and math.isnan(loss_b))
    max_diff, first = 0.0, ""
    for (name, _), a, b in zip(params, grads_a, grads_b):
        if a is None or b is None:
            if (a is None) != (b is None) and not first:
                first = name
            continue
        if not torch.equal(a, b):
            diff = float((a - b).abs().max())
            if not first:
                first = name
            max_diff = max(max_diff, diff if math.isfinite(diff) else math.inf)
    evidence = dict(loss_first=loss_a, loss_second=loss_b, loss_difference=abs(loss_a - loss_b),
                    max_grad_difference=max_diff, grad_hash_match=int(hash_a == hash_b))
    if same_loss and hash_a == hash_b:
        out.info(f"a step replayed from the same batch and RNG state gives the same loss ({loss_a:.6g}) and "
                 f"bit-identical gradients (hash {hash_a[:12]})", "", **evidence)
    else:
        where = f", first in '{first}'" if first else ""
        out.warning(f"replaying one step from the same batch and RNG state changed the loss by {abs(loss_a - loss_b):.3g} "
                    f"and the gradients by up to {max_diff:.3g}{where} (hash {hash_a[:12]} vs {hash_b[:12]}): the run "
                    "cannot be reproduced exactly; look for randomness outside torch's RNG (a private Generator, time, "
                    "state kept in forward) or nondeterministic kernels (torch.use_deterministic_algorithms(True))",
                    first, **evidence)
    return out.items
