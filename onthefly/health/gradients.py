"""Gradients: per-layer norms from one probe step, exploding and vanishing layers, parameters that get
no gradient, and trainable parameters the optimizer does not hold."""

from __future__ import annotations

import math

import torch

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable, all_params, backward, forward, held
from onthefly.runtime.grad_norm import tensor_norms

EXPLODING = 1e3  # a layer gradient norm above this moves weights by lr * 1000 per step
VANISHING = 1e-7  # below this a layer effectively stops learning at any sane lr
MAX_LISTED = 8
MAX_EVIDENCE_LAYERS = 256


def layer_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _listed(names: list[str]) -> str:
    return ", ".join(names[:MAX_LISTED]) + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def check(inp: CheckInput) -> list[Finding]:
    ctx = inp.ctx
    out = Findings("gradients")
    params = all_params(ctx)
    in_optimizer = {id(p) for group in ctx.optimizer.param_groups for p in group["params"]}
    trainable = [(n, p) for n, p in params if p.requires_grad]
    missing = [n for n, p in trainable if id(p) not in in_optimizer]
    if missing:
        out.error(f"{len(missing)} trainable parameter(s) are not in the optimizer and will never change: "
                  f"{_listed(missing)}; add them to a param group, or set requires_grad=False",
                  missing[0], count=len(missing))
    frozen = [n for n, p in params if not p.requires_grad and id(p) in in_optimizer]
    if frozen:
        out.info(f"{len(frozen)} frozen parameter(s) sit in the optimizer (harmless): {_listed(frozen)}",
                 frozen[0], count=len(frozen))

    try:
        batch = inp.probe(1)[0]
    except ProbeUnavailable as exc:
        out.info(f"gradients not probed: {exc}")
        return out.items
    with held(ctx):
        loss = forward(ctx, batch).loss
        backward(ctx, loss)
        no_grad = [n for n, p in trainable if p.grad is None]
        with_grad = [(n, p) for n, p in trainable if p.grad is not None]
        if with_grad:
            norms = torch.stack([g.float().cpu() for g in tensor_norms([p.grad for _, p in with_grad])]).tolist()
            weights = torch.stack([w.float().cpu() for w in torch._foreach_norm([p.detach() for _, p in with_grad])]).tolist()
        else:
            norms, weights = [], []

    if no_grad:
        out.warning(f"{len(no_grad)} trainable parameter(s) get no gradient from the loss: {_listed(no_grad)}; they "
                    "are unused in forward, detached, or run under no_grad; remove them or freeze them",
                    no_grad[0], count=len(no_grad))

    layers: dict[str, list[float]] = {}
    for (name, _), g, w in zip(with_grad, norms, weights):
        sq = layers.setdefault(layer_of(name), [0.0, 0.0])
        sq[0] += g * g
        sq[1] += w * w
    layer_norms = {layer: (math.sqrt(g2), math.sqrt(w2)) for layer, (g2, w2) in layers.items()}
    for layer, (g, w) in layer_norms.items():
        if not math.isfinite(g) or g > EXPLODING:
            out.error(f"gradients of layer '{layer}' are exploding (norm {g:.3g}): lower the lr, clip gradients "
                      "(torch.nn.utils.clip_grad_norm_) or check the loss scale and initialisation",
                      layer, grad_norm=g, param_norm=w, threshold=EXPLODING)
        elif g < VANISHING:
            out.warning(f"gradients of layer '{layer}' are vanishing (norm {g:.3g}): it barely learns; look for "
                        "saturating activations, too-deep plain stacks, or missing normalisation/residuals",
                        layer, grad_norm=g, param_norm=w, threshold=VANISHING)
    if layer_norms:
        total = math.sqrt(sum(g * g for g, _ in layer_norms.values()))
        largest = max(layer_norms, key=lambda k: layer_norms[k][0])
        smallest = min(layer_norms, key=lambda k: layer_norms[k][0])
        evidence = {f"grad_norm/{k}": v[0] for k, v in list(layer_norms.items())[:MAX_EVIDENCE_LAYERS]}
        evidence.update(total_grad_norm=total, loss=float(loss.detach().float()), layers=len(layer_norms))
        out.info(f"total gradient norm {total:.3g} over {len(layer_norms)} layers; largest '{largest}' "
                 f"{layer_norms[largest][0]:.3g}, smallest '{smallest}' {layer_norms[smallest][0]:.3g}", "", **evidence)
    return out.items
