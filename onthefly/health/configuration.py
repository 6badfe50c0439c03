"""Configuration: train mode while training, scheduler/optimizer pairing, learning rates, and data loader
settings that will hurt (no shuffling, num_workers=0 on a slow dataset, a 1-sample last batch with
BatchNorm, ...)."""

from __future__ import annotations

import os
import statistics

import torch
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.health.probe import ProbeUnavailable, loader_parts

ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adamax)
ADAM_HIGH_LR = 0.01
SGD_HIGH_LR = 1.0
SLOW_BATCH_SECONDS = 0.005
SLOW_SHARE = 0.2
MAX_LISTED = 8


def _modes(out: Findings, model: nn.Module) -> None:
    if not model.training:
        out.error("the model is in eval mode while it trains: dropout is off and BatchNorm uses running statistics; "
                  "call model.train() before fit (and after your own evaluation code)", "model")
        return
    stuck = [name for name, m in model.named_modules() if name and not m.training]
    if stuck:
        listed = ", ".join(stuck[:MAX_LISTED]) + (f" and {len(stuck) - MAX_LISTED} more" if len(stuck) > MAX_LISTED else "")
        out.warning(f"{len(stuck)} submodule(s) are in eval mode inside a training model: {listed}; fine for "
                    "deliberately frozen layers, otherwise call model.train()", stuck[0], count=len(stuck))


def _scheduler(out: Findings, ctx) -> None:
    scheduler, optimizer = ctx.scheduler, ctx.optimizer
    if scheduler is None:
        return
    owner = getattr(scheduler, "optimizer", None)
    if owner is not None and owner is not optimizer:
        out.error(f"the {type(scheduler).__name__} drives a different optimizer than the one training steps, so its "
                  "learning-rate changes never reach training; build it with the optimizer you pass to fit", "scheduler")
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        planned = ctx.run.total_steps
        total = int(scheduler.total_steps)
        if planned and total < planned:
            out.error(f"OneCycleLR was built for {total} steps but the run plans {planned}: stepping it past its end "
                      f"raises ValueError; build it with total_steps={planned} and step it every batch", "scheduler",
                      scheduler_steps=total, planned_steps=planned)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and ctx.val_loader is None:
        out.warning("ReduceLROnPlateau needs a validation loss to step on, and this run has no val_loader: the lr "
                    "will never drop; pass val_loader= or use another scheduler", "scheduler")


def _learning_rates(out: Findings, ctx) -> None:
    optimizer = ctx.optimizer
    adam = isinstance(optimizer, ADAM_FAMILY)
    for g, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if hasattr(lr, "item"):
            lr = float(lr.item())
        if not isinstance(lr, (int, float)):
            continue
        trainable = sum(p.numel() for p in group["params"] if p.requires_grad)
        subject = f"param_groups[{g}].lr"
        if lr == 0 and trainable and ctx.scheduler is None:
            out.warning(f"param group {g} has lr=0: its {trainable} trainable values never change", subject, lr=lr)
        elif adam and lr > ADAM_HIGH_LR:
            out.warning(f"lr={lr:g} in param group {g} is high for {type(optimizer).__name__} (usually 1e-5..3e-3): "
                        "expect divergence; try 1e-3", subject, lr=lr, threshold=ADAM_HIGH_LR)
        elif isinstance(optimizer, torch.optim.SGD) and lr > SGD_HIGH_LR:
            out.warning(f"lr={lr:g} in param group {g} is high for SGD: expect divergence; try 0.1 or less",
                        subject, lr=lr, threshold=SGD_HIGH_LR)
        if type(optimizer) is torch.optim.Adam and group.get("weight_decay", 0) and not group.get("decoupled_weight_decay"):
            out.info(f"Adam's weight_decay in param group {g} is an L2 term added to the gradient; AdamW decouples it "
                     "(usually what is wanted)", f"param_groups[{g}].weight_decay", weight_decay=group["weight_decay"])


def _loader(out: Findings, inp: CheckInput) -> None:
    ctx = inp.ctx
    loader = ctx.train_loader
    if not isinstance(loader, DataLoader):
        return
    workers = loader.num_workers
    sampler = loader.sampler
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", sampler) if batch_sampler is not None else sampler
    if isinstance(inner, SequentialSampler) or (isinstance(inner, DistributedSampler) and not inner.shuffle):
        out.warning("the training loader does not shuffle: consecutive batches are correlated and every epoch is the "
                    "same; pass shuffle=True (or a shuffling sampler)", "train_loader.sampler")
    cpus = os.cpu_count() or 1
    if workers > cpus:
        out.warning(f"num_workers={workers} exceeds the {cpus} CPUs: workers compete with each other and with "
                    "training; use at most the CPU count", "train_loader.num_workers", num_workers=workers, cpus=cpus)
    if ctx.device.type == "cuda" and not loader.pin_memory:
        out.info("pin_memory is off on a CUDA run: host-to-device copies cannot overlap compute",
                 "train_loader.pin_memory")
    if workers > 0 and not loader.persistent_workers:
        out.info(f"persistent_workers is off: {workers} workers are restarted every epoch",
                 "train_loader.persistent_workers", num_workers=workers)
    parts = loader_parts(loader)
    if parts is None:
        return
    _, n, batch_size, _ = parts
    if workers == 0:
        try:
            load_s = inp.seconds_per_batch
        except ProbeUnavailable:
            load_s = 0.0
        steps = inp.monitor.recent_steps()[-50:] if inp.monitor is not None else []
        compute_s = statistics.median(max(s.step_seconds - s.data_seconds, 0.0) for s in steps) if steps else 0.0
        if load_s > SLOW_BATCH_SECONDS and (compute_s == 0.0 or load_s > SLOW_SHARE * (load_s + compute_s)):
            out.warning(f"num_workers=0 and loading one batch takes {load_s * 1e3:.1f} ms"
                        + (f" against {compute_s * 1e3:.1f} ms of compute" if compute_s else "")
                        + ": training waits for every batch; use num_workers>=2 (and persistent_workers=True)",
                        "train_loader.num_workers", load_ms=load_s * 1e3, compute_ms=compute_s * 1e3, num_workers=0)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ctx.model.modules())
    if has_bn and batch_size:
        if batch_size == 1:
            out.error("batch_size=1 with BatchNorm in training mode: the batch statistics of one sample are "
                      "meaningless (and raise for 2-D inputs); use a larger batch or GroupNorm/LayerNorm",
                      "train_loader.batch_size", batch_size=1)
        elif not loader.drop_last and n % batch_size == 1:
            out.error(f"the last batch of each epoch holds 1 sample ({n} samples, batch_size={batch_size}) and the "
                      "model has BatchNorm, which raises or degrades on it; set drop_last=True",
                      "train_loader.drop_last", samples=n, batch_size=batch_size)


def check(inp: CheckInput) -> list[Finding]:
    out = Findings("configuration")
    ctx = inp.ctx
    _modes(out, ctx.model)
    _scheduler(out, ctx)
    _learning_rates(out, ctx)
    _loader(out, inp)
    if not out.problems:
        out.info("train mode, optimizer, scheduler and loader settings look sensible")
    return out.items
