"""Per-sample losses computed off the training thread (CPU) equal those computed in the step; the grad norm
is the norm of the gradients before anything (a clipping hook, the optimizer) changes them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly import RunHook, Trainer
from onthefly.runtime.deferred import LaterSampleLosses, resolve_pending
from onthefly.runtime.events import EventKind

SIZES = (16, 16, 7, 16, 1)
CASES = [
    ("ce", nn.CrossEntropyLoss(), lambda g, b: (torch.randn(b, 5, generator=g), torch.randint(0, 5, (b,), generator=g))),
    ("ce_weighted_smoothing", nn.CrossEntropyLoss(weight=torch.rand(5), label_smoothing=0.1, ignore_index=2),
     lambda g, b: (torch.randn(b, 5, generator=g), torch.randint(0, 5, (b,), generator=g))),
    ("ce_spatial", nn.CrossEntropyLoss(), lambda g, b: (torch.randn(b, 4, 3, 3, generator=g),
                                                       torch.randint(0, 4, (b, 3, 3), generator=g))),
    ("mse", nn.MSELoss(), lambda g, b: (torch.randn(b, 3, generator=g), torch.randn(b, 3, generator=g))),
    ("huber", nn.HuberLoss(delta=0.5), lambda g, b: (torch.randn(b, 3, generator=g), torch.randn(b, 3, generator=g))),
    ("bce_logits", nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 1.0])),
     lambda g, b: (torch.randn(b, 2, generator=g), torch.randint(0, 2, (b, 2), generator=g).float())),
]


def _none(loss):
    clone = copy.copy(loss)
    clone.reduction = "none"
    return clone.forward


@pytest.mark.parametrize("name,loss,make", CASES, ids=[c[0] for c in CASES])
def test_steps_computed_together_equal_each_step_alone(name, loss, make):
    g = torch.Generator().manual_seed(0)
    fn = _none(loss)
    batches = [make(g, b) for b in SIZES]
    later = [LaterSampleLosses(fn, p, t) for p, t in batches]
    resolve_pending([None, *later, 3.0])  # other events' payloads are ignored
    for (pred, target), value in zip(batches, later):
        alone = fn(pred, target)
        expected = alone.reshape(alone.shape[0], -1).mean(dim=1).float().numpy()
        got = value.value()
        assert got.shape == (pred.shape[0],)
        np.testing.assert_array_equal(got, expected)


def test_inputs_are_copied_at_call_time():
    fn = _none(nn.MSELoss())
    pred, target = torch.ones(4, 2), torch.zeros(4, 2)
    later = LaterSampleLosses(fn, pred, target)
    pred.mul_(3)
    target.add_(1)
    np.testing.assert_array_equal(later.value(), np.ones(4, dtype=np.float32))


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
