"""Fisher-weighted averaging of forks, with a diagonal Fisher that is normalised so it cannot collapse.

Entry point for ``resolutions.py``::

    result = fisher_merge(generalist, specialists, region_indices=[r.indices for r in regions.regions],
                          optimizer=generalist_optimizer, data=source,
                          mix=replay(region_union, rest, 0.5), ledger=merge_ledger, seed=seed,
                          loss_fn=loss_fn)   # -> MergeResult; Fisher estimation + fine-tune = exactly the budget

The diagonal (empirical) Fisher of a model on samples S is the mean over S of each parameter's squared
per-sample gradient, computed with ``torch.func`` (``vmap`` of ``grad`` over ``functional_call``) on
``n_samples`` (128, the protocol's figure) samples of each member's own data: the specialist's region, the
generalist's rest. Each per-sample gradient is charged as one sample-gradient.

Why normalise: a confident specialist has near-zero gradients, so its raw Fisher is orders of magnitude
smaller than the generalist's and the weighted average silently returns the generalist (PROTOCOL finding
7). Each member's Fisher is divided by its own mean over all parameters, so every member brings the same
total weight and the Fisher only decides *where* each one wins. ``MergeResult.details["shares"]`` reports
each member's mean share of the merged weights, so a collapse would be visible, not silent.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from onthefly.lab.budget import Ledger
from onthefly.lab.merges.average import average_state_dicts, finetune, merge_budget, recalibrate_batchnorm
from onthefly.lab.merges.result import MergeResult, state_dict_hash
from onthefly.lab.train_steps import DataSource, Mix, clone_model, clone_optimizer
from onthefly.runtime.errors import InvalidArgument
from onthefly.trainer.forward import split_batch, to_device

FISHER_SAMPLES = 128
EPS = 1e-8  # added to normalised Fisher values (mean 1), so a parameter no member cares about is averaged
GRADIENT_MEMORY = 256 << 20  # bytes of per-sample gradients held at once: chunks shrink for large models


def diagonal_fisher(model: nn.Module, data: DataSource, indices: Sequence[int] | np.ndarray, *,
                    n_samples: int = FISHER_SAMPLES, seed: int = 0,
                    loss_fn: Callable[..., torch.Tensor] | None = None, ledger: Ledger | None = None,
                    label: str = "fisher") -> dict[str, torch.Tensor]:
    """Mean squared per-sample gradient of every trainable parameter over ``n_samples`` of ``indices``.

    Samples are drawn without replacement (seeded; all of them if there are fewer). The model runs in
    eval mode (no dropout; BatchNorm on its running statistics) and is not modified. Charges one
    sample-gradient per sample to ``ledger`` (checked before any work).
    """
    idx = data.check_indices(np.asarray(indices), "the Fisher sample set")
    if n_samples < 1:
        raise InvalidArgument(f"n_samples must be >= 1, got {n_samples}")
    if idx.size > n_samples:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=n_samples, replace=False))
    if ledger is not None:
        ledger.require(int(idx.size))
    loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise InvalidArgument("the model has no trainable parameters: there is no Fisher to compute")
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    device = next(iter(params.values())).device

    def sample_loss(p: dict[str, torch.Tensor], inputs: tuple, target: Any) -> torch.Tensor:
        batched = tuple(t.unsqueeze(0) for t in inputs)
        out = functional_call(model, (p, buffers), batched)
        loss = loss_fn(out, target.unsqueeze(0))
        return loss.sum() if loss.dim() else loss

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    per_sample_bytes = sum(v.numel() * v.element_size() for v in params.values())
    step = max(1, min(data.batch_size, GRADIENT_MEMORY // max(per_sample_bytes, 1)))
    modes = [(m, m.training) for m in model.modules()]  # given back one by one: a frozen BatchNorm stays so
    model.eval()
    try:
        for start in range(0, idx.size, step):
            chunk = idx[start:start + step]
            inputs, target = split_batch(data.batch(chunk))
            inputs = inputs if isinstance(inputs, tuple) else (inputs,)
            if not all(isinstance(t, torch.Tensor) for t in inputs) or not isinstance(target, torch.Tensor):
                raise InvalidArgument("the Fisher needs batches of tensors (inputs..., target)")
            grads = per_sample_grads(params, to_device(inputs, device), to_device(target, device))
            for k, g in grads.items():
                total[k] += (g.detach() ** 2).sum(dim=0)
    finally:
        for module, training in modes:
            module.training = training
    if ledger is not None:
        ledger.charge(int(idx.size), label)
    return {k: v / idx.size for k, v in total.items()}


def normalize_fisher(fisher: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``fisher`` divided by its mean over every parameter entry (so the result has mean 1)."""
    count = sum(v.numel() for v in fisher.values())
    mean = float(sum(float(v.double().sum()) for v in fisher.values()) / max(count, 1))
    if not np.isfinite(mean) or mean <= 0:
        raise InvalidArgument("this Fisher is zero (the model fits its samples exactly, or the loss does not depend "
                              "on the weights) or not finite; Fisher weighting cannot tell parameters apart here, "
                              "use the uniform average")
    return {k: v / mean for k, v in fisher.items()}


def fisher_average(states: Sequence[Mapping[str, torch.Tensor]], fishers: Sequence[Mapping[str, torch.Tensor]], *,
                   normalize: bool = True, eps: float = EPS) -> tuple[dict[str, torch.Tensor], list[float]]:
    """(merged state, each member's mean share): every parameter is ``sum_i F_i θ_i / sum_i F_i``.

    Entries without a Fisher (buffers) are averaged uniformly; integer ones come from the first member.
    With ``normalize=False`` raw Fishers are used, which is what collapses to the most uncertain member.
    """
    if len(states) != len(fishers) or not states:
        raise InvalidArgument(f"give one Fisher per model ({len(states)} model(s), {len(fishers)} Fisher(s))")
    fishers = [normalize_fisher(f) if normalize else dict(f) for f in fishers]
    merged = average_state_dicts(states)
    share_sums = [0.0] * len(states)
    count = 0
    for key in fishers[0]:
        if any(key not in f for f in fishers) or key not in states[0]:
            raise InvalidArgument(f"parameter {key!r} is missing from a Fisher or a model; compute every Fisher "
                                  "on the same architecture")
        weights = [f[key].double() + eps for f in fishers]
        denominator = sum(weights)
        acc = sum(w * s[key].double() for w, s in zip(weights, states))
        merged[key] = (acc / denominator).to(states[0][key].dtype)
        for i, w in enumerate(weights):
            share_sums[i] += float((w / denominator).sum())
        count += denominator.numel()
    return merged, [s / max(count, 1) for s in share_sums]


def fisher_merge(generalist: nn.Module, specialists: Sequence[nn.Module], *,
                 optimizer: torch.optim.Optimizer, data: DataSource, mix: Mix, ledger: Ledger, seed: int,
                 region_indices: Sequence[Sequence[int] | np.ndarray] | None = None,
                 include_generalist: bool = True, generalist_indices: Sequence[int] | np.ndarray | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, step_fn: Callable[..., Any] | None = None,
                 budget: int | None = None, n_samples: int = FISHER_SAMPLES, normalize: bool = True,
                 bn_indices: Sequence[int] | np.ndarray | None = None,
                 factory: Callable[[], nn.Module] | None = None) -> MergeResult:
    """Fisher-weighted average of the specialists and (``include_generalist``) the generalist, then BatchNorm
    recalibration and a fine-tune on ``mix`` with what is left of the budget.

    Specialist ``i``'s Fisher is computed on ``region_indices[i]`` (default: the first pool of ``mix``, the
    region(s) of ``replay(region, rest, f)``), the generalist's on ``generalist_indices`` (default: the other
    pools of ``mix``, the rest; all of ``mix`` if it has one pool). Spends exactly ``budget`` (default: all
    ``ledger`` has left): ``n_samples`` per member on the Fisher, the rest on the fine-tune, with a fork of the
    generalist's ``optimizer``. Neither the generalist nor the specialists are modified.
    """
    if not specialists:
        raise InvalidArgument("a merge needs at least one specialist")
    pools = [p.indices for p in mix.pools]
    if region_indices is None:
        region_indices = [pools[0]] * len(specialists)
    if generalist_indices is None:
        generalist_indices = np.concatenate(pools[1:]) if len(pools) > 1 else pools[0]
    if not include_generalist:
        generalist_indices = None
    if len(region_indices) != len(specialists):
        raise InvalidArgument(f"give one index set per specialist ({len(specialists)} specialist(s), "
                              f"{len(region_indices)} index set(s))")
    if loss_fn is None and step_fn is not None:
        raise InvalidArgument("the Fisher needs per-sample gradients of a loss: pass loss_fn= "
                              "(a step_fn is not enough)")
    spend = merge_budget(ledger, budget)
    members = list(zip(specialists, region_indices))
    if generalist_indices is not None:
        members.insert(0, (generalist, generalist_indices))
    fisher_cost = sum(min(n_samples, len(np.asarray(ix).reshape(-1))) for _, ix in members)
    if fisher_cost > spend:
        raise InvalidArgument(f"the Fisher alone needs {fisher_cost} sample-gradients ({n_samples} per model) but the "
                              f"merge has {spend}; give a larger budget or fewer n_samples")
    before = ledger.spent
    fishers = [diagonal_fisher(m, data, ix, n_samples=n_samples, seed=seed + i, loss_fn=loss_fn, ledger=ledger)
               for i, (m, ix) in enumerate(members)]
    state, shares = fisher_average([m.state_dict() for m, _ in members], fishers, normalize=normalize)
    merged = clone_model(generalist, factory)
    merged.load_state_dict(state)
    bn_set = np.unique(np.concatenate([p.indices for p in mix.pools])) if bn_indices is None else bn_indices
    forwarded = recalibrate_batchnorm(merged, data, bn_set)
    rest = spend - (ledger.spent - before)
    merged = finetune(merged, clone_optimizer(optimizer, generalist, merged), data=data, mix=mix,
                      sample_gradients=rest, ledger=ledger, seed=seed, loss_fn=loss_fn, step_fn=step_fn,
                      label="merge-finetune")
    if rest:
        forwarded += recalibrate_batchnorm(merged, data, bn_set)
    if forwarded:
        ledger.count_forward(forwarded, "bn-recalibration")
    return MergeResult("fisher", merged, state_dict_hash(merged), ledger.spent - before, forwarded,
                       {"shares": shares, "normalized": normalize, "fisher_sample_gradients": fisher_cost,
                        "finetune_sample_gradients": rest, "include_generalist": generalist_indices is not None})
