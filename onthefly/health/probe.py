"""Probing the model beside the training loop without leaving a trace.

``held(ctx)`` saves and restores everything a probe could change: the RNGs (torch CPU and CUDA,
Python, NumPy), every parameter's ``.grad`` (the tensor objects themselves), every buffer's values
(BatchNorm running statistics) and every module's train/eval mode. Probes never step the optimizer.

``probe_batches`` builds batches straight from the training dataset (``dataset[i]`` and the loader's
own ``collate_fn``) instead of iterating the user's DataLoader: iterating would consume the sampler's
RNG draws and, for a loader with persistent workers, reset the iterator training is reading from.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset
from torch.utils.data._utils.collate import default_collate

from onthefly.trainer.forward import to_device

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext

DEFAULT_BATCH = 8


class ProbeUnavailable(Exception):
    """A probe cannot run for this run; the message says why and what would make it possible."""


def all_params(ctx: "LoopContext") -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters of the model, then optimizer parameters the model does not own (named by group)."""
    named = list(ctx.model.named_parameters())
    seen = {id(p) for _, p in named}
    if ctx.optimizer is not None:
        for g, group in enumerate(ctx.optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if id(p) not in seen:
                    seen.add(id(p))
                    named.append((f"optimizer.group{g}[{i}]", p))
    return named


@contextlib.contextmanager
def held(ctx: "LoopContext") -> Iterator[None]:
    """Run a probe; afterwards RNGs, grads, buffers and modes are exactly as before."""
    model = ctx.model
    grads = [(p, p.grad) for _, p in all_params(ctx)]
    buffers = [(m, name, b, b.detach().clone()) for m in model.modules()
               for name, b in m._buffers.items() if b is not None]
    modes = [(m, m.training) for m in model.modules()]
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            for p, _ in grads:
                p.grad = None
            yield
        finally:
            for p, g in grads:
                p.grad = g
            with torch.no_grad():
                for m, name, b, saved in buffers:
                    b.copy_(saved)
                    m._buffers[name] = b
            for m, training in modes:
                m.training = training
            random.setstate(py_state)
            np.random.set_state(np_state)


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def loader_parts(loader: Any) -> tuple[Any, int, int | None, Any] | None:
    """(dataset, length, batch size or None for unbatched loaders, collate) of a map-style loader, else None."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
        return None
    try:
        n = len(dataset)
    except TypeError:
        return None
    if n == 0:
        return None
    batch_size = getattr(loader, "batch_size", None)
    if batch_size is None:
        batch_size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    collate = getattr(loader, "collate_fn", None) or default_collate
    return dataset, n, batch_size, collate


def probe_batches(ctx: "LoopContext", count: int) -> tuple[list[Any], float]:
    """``count`` batches spread evenly over the training set, on the run's device; and seconds per batch."""
    parts = loader_parts(ctx.train_loader)
    if parts is None:
        raise ProbeUnavailable("the training loader has no map-style dataset (dataset[i] and len) to draw probe batches from")
    dataset, n, batch_size, collate = parts
    size = batch_size or 1
    total = count * size
    stride = max(1, n // total)
    batches = []
    started = time.perf_counter()
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):  # random augmentations must not move training's RNG
            for b in range(count):
                idx = [((b * size + k) * stride) % n for k in range(min(size, n))]
                batch = collate([dataset[i] for i in idx]) if batch_size else collate(dataset[idx[0]])
                batches.append(to_device(batch, ctx.device))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return batches, (time.perf_counter() - started) / max(count, 1)


def forward(ctx: "LoopContext", batch: Any) -> Any:
    """The loop's own forward pass and loss on ``batch`` (a StepOutput)."""
    if ctx.forward is None:
        raise ProbeUnavailable("this run has no loss function OnTheFly can call outside the loop "
                               "(pass loss_fn= or step_fn= to attach_lightning / Trainer.fit)")
    autocast = ctx.autocast() if ctx.autocast is not None else contextlib.nullcontext()
    with autocast:
        return ctx.forward(ctx.model, batch)


def backward(ctx: "LoopContext", loss: torch.Tensor) -> None:
    """Backward as the loop does it; with a grad scaler, gradients are unscaled afterwards."""
    scaler = ctx.scaler
    if scaler is not None and getattr(scaler, "is_enabled", lambda: False)():
        scaler.scale(loss).backward()
        inv = 1.0 / float(scaler.get_scale())
        with torch.no_grad():
            for _, p in all_params(ctx):
                if p.grad is not None:
                    p.grad.mul_(inv)
    else:
        loss.backward()


def run_model(ctx: "LoopContext", batch: Any) -> Any:
    """A forward pass on ``batch``: the loop's own forward when there is one, else the model on its inputs."""
    if ctx.forward is not None:
        return forward(ctx, batch)
    from onthefly.trainer.forward import call_model, split_batch

    try:
        inputs, _ = split_batch(batch)
    except TypeError as exc:
        raise ProbeUnavailable(str(exc)) from None
    autocast = ctx.autocast() if ctx.autocast is not None else contextlib.nullcontext()
    with autocast:
        return call_model(ctx.model, inputs)
