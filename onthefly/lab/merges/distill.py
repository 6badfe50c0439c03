"""Distillation of the routed specialists into one copy of the generalist (T = 2, 0.5 CE + 0.5 KL).

Entry point for ``resolutions.py``::

    teacher = routing.build_routed(generalist, specialists, region_set)      # the fork's routed model
    result = distill_merge(generalist, teacher, optimizer=generalist_optimizer, data=source,
                           mix=replay(region_union, rest, 0.5), ledger=merge_ledger, seed=seed)
    # -> MergeResult; spends exactly ledger.remaining (or budget=) as sample-gradients

The student starts from the generalist's weights with a fork of its optimizer state and learns, on the
region + replay mix, ``alpha * CE(student, label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``
(softmax at temperature T; T^2 keeps the soft term's gradient scale independent of T, as in Hinton et al.).
Teacher logits are computed once per distinct training sample, in eval mode, and counted on the ledger
as forward-only samples (never as sample-gradients). The protocol measured distillation as usually the
worst resolution; it is on the menu so that the comparison shows it, not because it is expected to win.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onthefly.lab.budget import Ledger
from onthefly.lab.merges.average import merge_budget
from onthefly.lab.merges.result import MergeResult, state_dict_hash
from onthefly.lab.train_steps import DataSource, Mix, batch_plan, clone_model, clone_optimizer
from onthefly.runtime.errors import InvalidArgument
from onthefly.trainer.forward import call_model, split_batch, to_device

TEMPERATURE = 2.0
ALPHA = 0.5  # weight of the hard-label cross-entropy; 1 - ALPHA goes to the teacher's soft labels


@torch.no_grad()
def teacher_logits(teacher: nn.Module, data: DataSource, indices: np.ndarray) -> dict[int, torch.Tensor]:
    """The teacher's logits for each of ``indices`` (base index -> logits on CPU), in eval mode."""
    was_training = teacher.training
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
        teacher.train(was_training)
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


def distill_merge(generalist: nn.Module, teacher: nn.Module, *, optimizer: torch.optim.Optimizer,
                  data: DataSource, mix: Mix, ledger: Ledger, seed: int, budget: int | None = None,
                  temperature: float = TEMPERATURE, alpha: float = ALPHA,
                  hard_loss: Callable[..., torch.Tensor] | None = None,
                  factory: Callable[[], nn.Module] | None = None) -> MergeResult:
    """Train a copy of the generalist to match ``teacher`` (and the labels) on ``mix``; see the module doc.

    Spends exactly ``budget`` sample-gradients (default: all ``ledger`` has left), checked before any work.
    The generalist and the teacher are not modified; the global RNG is seeded for the run and restored.
    """
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
        soft = teacher_logits(teacher, data, needed)
        ledger.count_forward(int(needed.size), "teacher-logits")
        forwarded += int(needed.size)
        device = next((p.device for p in student.parameters()), torch.device("cpu"))
        was_training = student.training
        student.train()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
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
            student.train(was_training)
    return MergeResult("distill", student, state_dict_hash(student), ledger.spent - before, forwarded,
                       {"temperature": float(temperature), "alpha": float(alpha)})
