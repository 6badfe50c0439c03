"""The streamed grad norm is the norm of each step's gradients before anything (a clipping hook, the
optimizer) changes them: equal, bit for bit, to a plain loop's pre-clip norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly import RunHook, Trainer
from onthefly.health import NumericsGuard
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


def _reference_norms(data, clip: bool, optimizer=torch.optim.SGD, **kw) -> list[float]:
    """A plain loop with the same seed: the norm of each step's gradients before anything changes them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optimizer(model.parameters(), lr=0.1, momentum=0.9, **kw)
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


class _HalvesGrads(torch.optim.SGD):
    """An optimizer that writes into .grad in place: always, or only at the given steps (counted from 1)."""

    def __init__(self, params, at=None, **kw):
        super().__init__(params, **kw)
        self.at, self.calls = at, 0

    def step(self, closure=None):
        self.calls += 1
        if self.at is None or self.calls in self.at:
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad.mul_(0.5)
        return super().step(closure)


def _streamed(data, clip=False, optimizer=torch.optim.SGD, **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optimizer(model.parameters(), lr=0.1, momentum=0.9, **kw)
    norms = _Norms()
    torch.manual_seed(1)
    Trainer("t", "norms", max_epochs=1, serve=False, verbose=False, hooks=[norms, *([_Clip()] if clip else [])]
            ).fit(model, opt, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8, shuffle=True))
    return norms.norms


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "a_hook_clips"])
def test_streamed_grad_norm_is_the_norm_before_the_optimizer_step(clip):
    data = _data()
    expected = _reference_norms(data, clip)
    norms = _streamed(data, clip)
    assert len(norms) == len(expected) == 8
    assert norms == expected


def test_an_optimizer_that_writes_into_grad_gets_the_norm_taken_before_its_step():
    data = _data()
    expected = _reference_norms(data, clip=False, optimizer=_HalvesGrads)
    assert _streamed(data, optimizer=_HalvesGrads) == expected  # every step on the training thread


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "numerics_guard"])
def test_sparse_gradients_get_a_norm_instead_of_failing_the_step(guarded):
    # nn.Embedding(sparse=True) gives sparse .grad tensors, which torch._foreach_norm does not take.
    guard = NumericsGuard()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 4, sparse=True), nn.Flatten(), nn.Linear(12, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randint(0, 20, (32, 3), generator=g), torch.randint(0, 2, (32,), generator=g))
    norms = _Norms()
    Trainer("t", "sparse", max_epochs=1, serve=False, verbose=False, hooks=[norms, *([guard] if guarded else [])]).fit(
        model, opt, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8))
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Embedding(20, 4, sparse=True), nn.Flatten(), nn.Linear(12, 2))
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    expected = []
    for x, y in DataLoader(data, batch_size=8):
        ref_opt.zero_grad(set_to_none=True)
        nn.CrossEntropyLoss()(ref(x), y).backward()
        dense = [p.grad.to_dense() for p in ref.parameters()]
        expected.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d) for d in dense]))))
        ref_opt.step()
    assert norms.norms == pytest.approx(expected, rel=1e-6) and len(expected) == 4
    assert guard.trips == 0
