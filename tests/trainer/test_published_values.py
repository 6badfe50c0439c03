"""What the training thread publishes holds no CPU tensor: the bus's pump thread, which reads and later
drops every event, must never be the thread that frees a tensor (freeing one releases and retakes the
GIL, which made each drain a run of GIL hand-offs with the training loop)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly import RunHook, Trainer
from onthefly.runtime.events import EventKind


class _TensorBatches:
    """A batch sampler that yields each batch's indices as one int64 tensor."""

    def __init__(self, n: int, batch: int) -> None:
        self.n, self.batch = n, batch

    def __iter__(self):
        order = torch.randperm(self.n)
        for i in range(0, self.n, self.batch):
            yield order[i : i + self.batch]

    def __len__(self) -> int:
        return (self.n + self.batch - 1) // self.batch


class _Recorder(RunHook):
    """Notes what each payload holds at the moment it is published (the pump resolves payloads in place)."""

    def __init__(self) -> None:
        self.published: list = []

    def on_fit_start(self, ctx) -> None:
        bus = ctx.run.bus
        publish = bus.publish

        def record(event):
            p = event.payload
            if event.kind is EventKind.SAMPLE_LOSSES:
                self.published.append((event.kind, p.split, _holds_a_tensor(p.losses), _holds_a_tensor(p.indices),
                                       type(p.losses)))
            elif event.kind is EventKind.STEP_METRICS:
                self.published.append((event.kind, type(p.loss), type(p.grad_norm)))
            publish(event)

        bus.publish = record


def _holds_a_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) or isinstance(getattr(value, "base", None), torch.Tensor)


def test_published_losses_indices_and_metrics_hold_no_tensor():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(48, 4, generator=g), torch.randint(0, 3, (48,), generator=g))
    train = DataLoader(data, batch_sampler=_TensorBatches(48, 8))  # indices come as tensors
    val = DataLoader(data, batch_size=16)  # indices come as lists
    model = nn.Linear(4, 3)
    recorder = _Recorder()
    Trainer("t", "owned", max_epochs=1, serve=False, verbose=False, hooks=[recorder]).fit(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), train, val_loader=val)

    samples = [r[1:] for r in recorder.published if r[0] is EventKind.SAMPLE_LOSSES]
    assert sorted(split for split, *_ in samples) == ["train"] * 6 + ["val"] * 3
    assert all(not losses_tensor and not indices_tensor and kind is np.ndarray
               for _, losses_tensor, indices_tensor, kind in samples), samples
    metrics = [r[1:] for r in recorder.published if r[0] is EventKind.STEP_METRICS]
    assert metrics == [(float, float)] * 6
