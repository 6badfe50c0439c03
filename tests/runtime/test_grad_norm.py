"""The streamed grad norm is the norm of each step's gradients before anything (a clipping hook, the
optimizer) changes them: equal, bit for bit, to a plain loop's pre-clip norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly import RunHook, Trainer
from onthefly.runtime.events import EventKind


class _Clip(RunHook):
    def on_before_optimizer_step(self, ctx, loss):
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), 1e-3)  # writes into p.grad
        return True


class _Norms(RunHook):
    def __init__(self):
        self.norms = []

    def on_fit_start(self, ctx):
        ctx.run.bus.observe(lambda events: self.norms.extend(
            e.payload.grad_norm for e in events if e.kind == EventKind.STEP_METRICS))


def _reference_norms(data, clip: bool) -> list[float]:
    """A plain loop with the same seed: the norm of each step's gradients before anything changes them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(1)
    norms = []
    for x, y in DataLoader(data, batch_size=8, shuffle=True):
        opt.zero_grad(set_to_none=True)
        nn.CrossEntropyLoss()(model(x), y).backward()
        grads = [p.grad for p in model.parameters()]
        norms.append(float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))))
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        opt.step()
    return norms


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "a_hook_clips"])
def test_streamed_grad_norm_is_the_norm_before_the_optimizer_step(clip):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))
    expected = _reference_norms(data, clip)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    norms = _Norms()
    torch.manual_seed(1)
    Trainer("t", "norms", max_epochs=1, serve=False, verbose=False, hooks=[norms, *([_Clip()] if clip else [])]
            ).fit(model, opt, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8, shuffle=True))
    assert norms.norms == expected
