"""Distillation of the routed specialists into one copy of the generalist (T = 2, 0.5 CE + 0.5 KL).

Entry point for ``resolutions.py``::

    result = distill_merge(generalist, specialists, region_indices=[r.indices for r in regions.regions],
                           optimizer=generalist_optimizer, data=source, mix=replay(region_union, rest, 0.5),
                           ledger=merge_ledger, seed=seed, loss_fn=loss_fn)
    # or teacher=routing.build_routed(generalist, specialists, region_set): any module is a teacher
    # -> MergeResult; spends exactly ledger.remaining (or budget=) as sample-gradients

The student starts from the generalist's weights with a fork of its optimizer state and learns, on the
region + replay mix, ``alpha * CE(student, label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``
(softmax at temperature T; T^2 keeps the soft term's gradient scale independent of T, as in Hinton et al.).
Teacher logits are computed once per distinct training sample, in eval mode, and counted on the ledger
as forward-only samples (never as sample-gradients). The protocol measured distillation as usually the
worst resolution; it is on the menu so that the comparison shows it, not because it is expected to win.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onthefly.lab.budget import Ledger
from onthefly.lab.merges.average import merge_budget
from onthefly.lab.merges.result import MergeResult, state_dict_hash
from onthefly.lab.rng import kept_rng
from onthefly.lab.train_steps import DataSource, Mix, batch_plan, clone_model, clone_optimizer
from onthefly.runtime.errors import InvalidArgument
from onthefly.trainer.forward import call_model, split_batch, to_device

TEMPERATURE = 2.0
ALPHA = 0.5  # weight of the hard-label cross-entropy; 1 - ALPHA goes to the teacher's soft labels


@torch.no_grad()
def teacher_logits(teacher: nn.Module, data: DataSource, indices: np.ndarray) -> dict[int, torch.Tensor]:
    """The teacher's logits for each of ``indices`` (base index -> logits on CPU), in eval mode."""
    modes = [(m, m.training) for m in teacher.modules()]  # given back one by one: a frozen BatchNorm stays so
    teacher.eval()
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    out: dict[int, torch.Tensor] = {}
    try:
        for start in range(0, indices.size, data.batch_size):
            chunk = indices[start:start + data.batch_size]
            inputs, _ = split_batch(data.batch(chunk))
            logits = call_model(teacher, to_device(inputs, device)).detach().float().cpu()
            out.update(zip(chunk.tolist(), logits))
    finally:
        for module, training in modes:
            module.training = training
    return out


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, *,
                      temperature: float = TEMPERATURE, alpha: float = ALPHA,
                      hard_loss: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """``alpha * CE + (1 - alpha) * T^2 * KL(teacher at T || student at T)``, averaged over the batch."""
    hard = (hard_loss or F.cross_entropy)(student_logits, target)
    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    log_target=True, reduction="batchmean") * (t * t)
    return alpha * hard + (1.0 - alpha) * soft


def distill_merge(generalist: nn.Module, teacher: nn.Module | Sequence[nn.Module], *,
                  optimizer: torch.optim.Optimizer, data: DataSource, mix: Mix, ledger: Ledger, seed: int,
                  region_indices: Sequence[Sequence[int] | np.ndarray] | None = None, budget: int | None = None,
                  temperature: float = TEMPERATURE, alpha: float = ALPHA,
                  hard_loss: Callable[..., torch.Tensor] | None = None,
                  loss_fn: Callable[..., torch.Tensor] | None = None,
                  step_fn: Any = None, factory: Callable[[], nn.Module] | None = None) -> MergeResult:
    """Train a copy of the generalist to match the teacher (and the labels) on ``mix``; see the module doc.

    ``teacher`` is one module (e.g. the routed model), or the specialists: then a training sample's teacher is
    the specialist of its region (``region_indices[i]`` for specialist ``i``; with one specialist, default the
    first pool of ``mix``) and the generalist elsewhere, which is what the label-free router does on the
    samples the regions were found on. ``hard_loss`` (default ``loss_fn``, else cross-entropy) is the hard-label
    term. Spends exactly ``budget`` sample-gradients (default: all ``ledger`` has left), checked before any
    work. Nothing given is modified; the global RNG is seeded for the run and restored.
    """
    if step_fn is not None and hard_loss is None and loss_fn is None:
        raise InvalidArgument("distillation needs the model's logits and a hard-label loss: pass loss_fn= "
                              "(a step_fn alone does not say how to get logits)")
    hard_loss = hard_loss if hard_loss is not None else loss_fn
    teachers: list[tuple[nn.Module, np.ndarray | None]]
    if isinstance(teacher, nn.Module):
        teachers = [(teacher, None)]
    else:
        specialists = list(teacher)
        if not specialists:
            raise InvalidArgument("distillation needs a teacher: give the routed model or at least one specialist")
        if region_indices is None:
            if len(specialists) > 1:
                raise InvalidArgument(f"{len(specialists)} specialists: say which samples each one teaches with "
                                      "region_indices=[...], or pass teacher=routing.build_routed(...)")
            region_indices = [mix.pools[0].indices]
        if len(region_indices) != len(specialists):
            raise InvalidArgument(f"give one index set per specialist ({len(specialists)} specialist(s), "
                                  f"{len(region_indices)} index set(s))")
        teachers = [(generalist, None)] + [(m, np.asarray(ix, dtype=np.int64).reshape(-1))
                                           for m, ix in zip(specialists, region_indices)]
    if not temperature > 0:
        raise InvalidArgument(f"the distillation temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgument(f"alpha (the hard-label weight) must be in [0, 1], got {alpha}")
    spend = merge_budget(ledger, budget)
    for i, pool in enumerate(mix.pools):
        data.check_indices(pool.indices, f"pool {i} of the distillation data")
    student = clone_model(generalist, factory)
    opt = clone_optimizer(optimizer, generalist, student)
    before = ledger.spent
    forwarded = 0
    if spend:
        plan = batch_plan(mix, spend, data.batch_size, seed)
        needed = np.unique(np.concatenate(plan))
        soft: dict[int, torch.Tensor] = {}
        regions = [members for _, members in teachers if members is not None]
        elsewhere = np.setdiff1d(needed, np.concatenate(regions)) if regions else needed
        for model, members in teachers:
            taught = elsewhere if members is None else np.intersect1d(needed, members)
            soft.update(teacher_logits(model, data, taught))
            ledger.count_forward(int(taught.size), "teacher-logits")
            forwarded += int(taught.size)
        device = next((p.device for p in student.parameters()), torch.device("cpu"))
        # As train_steps: the student trains as the run does (each submodule keeps its own flag unless the
        # whole copy is in eval), and every global RNG is seeded and given back (CUDA devices included).
        modes = [(m, m.training) for m in student.modules()]
        if not student.training:
            student.train()
        try:
            with kept_rng(seed):
                for index in plan:
                    inputs, target = split_batch(to_device(data.batch(index), device))
                    opt.zero_grad(set_to_none=True)
                    logits = call_model(student, inputs)
                    loss = distillation_loss(logits, torch.stack([soft[int(i)] for i in index]).to(device), target,
                                             temperature=temperature, alpha=alpha, hard_loss=hard_loss)
                    ledger.charge(int(index.size), "distill")
                    loss.backward()
                    opt.step()
        finally:
            opt.zero_grad(set_to_none=True)
            for module, training in modes:
                module.training = training
    return MergeResult("distill", student, state_dict_hash(student), ledger.spent - before, forwarded,
                       {"temperature": float(temperature), "alpha": float(alpha)})
