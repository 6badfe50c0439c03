"""Weight averaging of forks (uniform or weighted; SWA over a fine-tune) and BatchNorm recalibration.

Entry point for ``resolutions.py``::

    result = uniform_merge(generalist, specialists, optimizer=generalist_optimizer, data=source,
                           mix=replay(region_indices, rest_indices, 0.5), ledger=merge_ledger, seed=seed,
                           loss_fn=loss_fn, swa=False)   # -> MergeResult; spends exactly ledger.remaining

Forks from one generalist stay in one linearly connected basin (PROTOCOL finding 7), so a plain average
of their weights is meaningful without permutation matching; it keeps only part of each specialist's gain,
which is why the merge phase's budget goes to a short fine-tune of the average (with ``swa=True`` the
fine-tune's iterates are averaged, SWA-style). Averaging moves the weights under every BatchNorm layer, so
averaged running statistics describe no real model: they are recomputed from data (forward-only passes,
counted on the ledger beside, not as, sample-gradients).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.lab.budget import Ledger
from onthefly.lab.merges.result import MergeResult, state_dict_hash
from onthefly.lab.train_steps import DataSource, Mix, clone_model, clone_optimizer, train_steps
from onthefly.runtime.errors import InvalidArgument
from onthefly.trainer.forward import call_model, split_batch, to_device

SWA_SNAPSHOTS = 8  # iterates averaged over the fine-tune when swa=True


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]],
                        weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted mean of floating-point entries (weights normalised to sum 1); other entries from the first.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) cannot be averaged and are taken as they are.
    """
    if not states:
        raise InvalidArgument("nothing to average: give at least one model")
    w = _weights(len(states), weights)
    keys = list(states[0].keys())
    for i, state in enumerate(states[1:], start=1):
        if set(state.keys()) != set(keys):
            diff = sorted(set(state.keys()) ^ set(keys))
            raise InvalidArgument(f"model {i} does not have the same entries as model 0 (differs at "
                                  f"{diff[:3]}); only forks of one architecture can be averaged")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        first = states[0][key]
        for i, state in enumerate(states[1:], start=1):
            if state[key].shape != first.shape:
                raise InvalidArgument(f"'{key}' has shape {tuple(state[key].shape)} in model {i} but "
                                      f"{tuple(first.shape)} in model 0; only forks of one architecture can "
                                      "be averaged")
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for wi, state in zip(w, states):
                acc += wi * state[key].detach().to(torch.float64)
            out[key] = acc.to(first.dtype)
        else:
            out[key] = first.detach().clone()
    return out


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise InvalidArgument(f"averaging weights must be {n} finite non-negative numbers, not all zero; got {w}")
    total = sum(w)
    return [x / total for x in w]


def average_models(models: Sequence[nn.Module], weights: Sequence[float] | None = None, *,
                   template: nn.Module | None = None,
                   factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A new model (a copy of ``template``, default ``models[0]``) holding the weighted average of ``models``."""
    if not models:
        raise InvalidArgument("nothing to average: give at least one model")
    merged = clone_model(template if template is not None else models[0], factory)
    merged.load_state_dict(average_state_dicts([m.state_dict() for m in models], weights))
    return merged


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DataSource, indices: Sequence[int] | np.ndarray) -> int:
    """Recompute every BatchNorm layer's running mean/var from ``indices``; returns the samples forwarded.

    Running statistics are reset and re-estimated as a cumulative average (momentum None, every batch
    weighted equally, as ``torch.optim.swa_utils.update_bn`` does) over one pass in the user's batch size.
    Only the BatchNorm layers run in train mode, so dropout stays off and
    the statistics describe what the layers see at evaluation. Training flags and momenta are restored. A
    model without BatchNorm is left as it is and nothing is forwarded (0).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    idx = data.check_indices(np.asarray(indices), "the BatchNorm recalibration set")
    modes = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in norms]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    forwarded = 0
    try:
        model.eval()
        for bn in norms:
            if bn.track_running_stats:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: every batch counts equally
            bn.train()
        for start in range(0, idx.size, data.batch_size):
            chunk = idx[start:start + data.batch_size]
            if chunk.size == 1 and forwarded:
                break  # a trailing single sample: BatchNorm1d cannot take batch statistics of one
            inputs, _ = split_batch(data.batch(chunk))
            call_model(model, to_device(inputs, device))
            forwarded += int(chunk.size)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return forwarded


def merge_budget(ledger: Ledger, budget: int | None) -> int:
    """The sample-gradients a merge spends: ``budget``, or all that ``ledger`` has left."""
    if budget is None:
        budget = ledger.remaining
        if budget is None:
            raise InvalidArgument("give the merge a budget (sample-gradients) or a ledger with a limit")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise InvalidArgument(f"a merge budget must be a whole number of sample-gradients >= 0, got {budget!r}")
    ledger.require(int(budget))
    return int(budget)


def finetune(model: nn.Module, optimizer: torch.optim.Optimizer, *, data: DataSource, mix: Mix,
             sample_gradients: int, ledger: Ledger, seed: int, loss_fn: Callable[..., torch.Tensor] | None,
             step_fn: Callable[..., Any] | None, label: str, swa: bool = False) -> nn.Module:
    """Train ``model`` in place on ``sample_gradients`` samples of ``mix``; with ``swa`` return the average of
    ``SWA_SNAPSHOTS`` evenly spaced iterates (a new model), else ``model`` itself."""
    if sample_gradients <= 0:
        return model
    if not swa:
        train_steps(model, optimizer, data, mix, sample_gradients=sample_gradients, ledger=ledger, seed=seed,
                    loss_fn=loss_fn, step_fn=step_fn, label=label)
        return model
    # SWA: train in equal legs, snapshot after each, average the snapshots.
    legs = min(SWA_SNAPSHOTS, sample_gradients)
    sizes = [sample_gradients // legs + (1 if i < sample_gradients % legs else 0) for i in range(legs)]
    snapshots = []
    for i, size in enumerate(sizes):
        train_steps(model, optimizer, data, mix, sample_gradients=size, ledger=ledger, seed=seed + i,
                    loss_fn=loss_fn, step_fn=step_fn, label=label)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    averaged = clone_model(model)
    averaged.load_state_dict(average_state_dicts(snapshots))
    return averaged


def uniform_merge(generalist: nn.Module, specialists: Sequence[nn.Module], *, optimizer: torch.optim.Optimizer,
                  data: DataSource, mix: Mix, ledger: Ledger, seed: int,
                  loss_fn: Callable[..., torch.Tensor] | None = None, step_fn: Callable[..., Any] | None = None,
                  budget: int | None = None, weights: Sequence[float] | None = None, swa: bool = False,
                  include_generalist: bool = True, bn_indices: Sequence[int] | np.ndarray | None = None,
                  factory: Callable[[], nn.Module] | None = None) -> MergeResult:
    """Average the specialists and (``include_generalist``, the default) the generalist, recalibrate
    BatchNorm, fine-tune on ``mix``. With one specialist and no generalist the "average" is the specialist.

    Spends exactly ``budget`` sample-gradients (default: all ``ledger`` has left) on the fine-tune, with a
    fork of the generalist's ``optimizer`` (its state included). BatchNorm statistics are recomputed on
    ``bn_indices`` (default: every index ``mix`` draws from) after averaging and again after the fine-tune.
    Neither the generalist nor the specialists are modified.
    """
    if not specialists:
        raise InvalidArgument("a merge needs at least one specialist")
    spend = merge_budget(ledger, budget)
    members = ([generalist] if include_generalist else []) + list(specialists)
    merged = average_models(members, weights, template=generalist, factory=factory)
    bn_set = np.unique(np.concatenate([p.indices for p in mix.pools])) if bn_indices is None else bn_indices
    forwarded = recalibrate_batchnorm(merged, data, bn_set)
    opt = clone_optimizer(optimizer, generalist, merged)
    before = ledger.spent
    merged = finetune(merged, opt, data=data, mix=mix, sample_gradients=spend, ledger=ledger, seed=seed,
                      loss_fn=loss_fn, step_fn=step_fn, label="merge-finetune", swa=swa)
    if spend:
        forwarded += recalibrate_batchnorm(merged, data, bn_set)
    if forwarded:
        ledger.count_forward(forwarded, "bn-recalibration")
    return MergeResult("swa" if swa else "uniform", merged, state_dict_hash(merged), ledger.spent - before,
                       forwarded, {"members": len(members), "include_generalist": include_generalist,
                                   "finetune_sample_gradients": spend, "batchnorm_recalibrated": forwarded > 0})
