"""train_steps: exact compute, seeded, user's collate and batch size, base indices, never the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.lab.train_steps import (
    DataSource, batch_plan, clone_model, clone_optimizer, loader_base_indices, train_steps, uniform, upsample,
    weighted,
)
from onthefly.runtime.errors import InvalidArgument


def _setup(seed=0):
    torch.manual_seed(seed)
    model = BoringModel()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def test_spends_exactly_the_budget_and_charges_the_ledger():
    data = DataSource(boring_dataset(100), batch_size=16)
    model, opt = _setup()
    ledger = Ledger(1000)
    report = train_steps(model, opt, data, uniform(data.all_indices()), sample_gradients=250, ledger=ledger,
                         seed=1, loss_fn=nn.CrossEntropyLoss())
    assert report.sample_gradients == 250 and report.steps == 16  # 15 x 16 + 10
    assert ledger.spent == 250


def test_refuses_before_training_when_the_ledger_cannot_pay():
    data = DataSource(boring_dataset(100), batch_size=16)
    model, opt = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BudgetExceeded):
        train_steps(model, opt, data, uniform(data.all_indices()), sample_gradients=101, ledger=Ledger(100),
                    seed=0, loss_fn=nn.CrossEntropyLoss())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InvalidArgument):
        train_steps(model, opt, data, uniform(data.all_indices()), sample_gradients=0, ledger=Ledger(100),
                    seed=0, loss_fn=nn.CrossEntropyLoss())


def test_same_seed_same_weights_and_the_callers_rng_is_untouched():
    data = DataSource(boring_dataset(100), batch_size=16)
    results = []
    for _ in range(2):
        model, opt = _setup()
        torch.manual_seed(123)
        state = torch.get_rng_state()
        train_steps(model, opt, data, uniform(data.all_indices()), sample_gradients=200, ledger=Ledger(),
                    seed=7, loss_fn=nn.CrossEntropyLoss())
        assert torch.equal(torch.get_rng_state(), state)  # dropout drew from a forked generator
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_upsampling_fills_the_asked_fraction_of_every_batch():
    focus = np.arange(10)
    plan = batch_plan(upsample(np.arange(100), focus, 0.5), 640, 64, seed=0)
    assert len(plan) == 10
    for batch in plan:
        assert np.isin(batch, focus).sum() >= 32  # half from the focus set, the rest from all (may hit it too)


def test_uniform_covers_each_index_once_per_pass():
    plan = batch_plan(uniform(np.arange(50)), 100, 16, seed=3)
    flat = np.concatenate(plan)
    assert np.bincount(flat).tolist() == [2] * 50
    assert len(set(flat[:48].tolist())) == 48  # the first three batches are one pass, without repeats


def test_weighted_sampling_follows_the_weights():
    w = np.zeros(20)
    w[[3, 4]] = 1.0
    flat = np.concatenate(batch_plan(weighted(np.arange(20), w), 200, 16, seed=0))
    assert set(flat.tolist()) <= {3, 4}


def test_uses_the_loaders_collate_and_batch_size_through_random_split_never_the_loader():
    base = boring_dataset(120)
    train, _ = random_split(base, [80, 40], generator=torch.Generator().manual_seed(0))
    seen = []

    def collate(items):
        seen.append(len(items))
        x = torch.stack([i[0] for i in items])
        y = torch.stack([i[1] for i in items])
        return x, y

    loader = DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate)
    data = DataSource.from_loader(loader)
    assert data.dataset is base and data.batch_size == 8
    members = loader_base_indices(loader)
    assert sorted(members.tolist()) == sorted(train.indices)
    model, opt = _setup()
    rng_before = torch.get_rng_state()
    train_steps(model, opt, data, uniform(members), sample_gradients=20, ledger=Ledger(), seed=0,
                loss_fn=nn.CrossEntropyLoss())
    assert seen == [8, 8, 4]
    assert torch.equal(torch.get_rng_state(), rng_before)
    with pytest.raises(InvalidArgument, match="outside"):
        train_steps(model, opt, data, uniform(np.array([500])), sample_gradients=4, ledger=Ledger(), seed=0,
                    loss_fn=nn.CrossEntropyLoss())


class _NeedsArgs(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 3))

    def forward(self, x):
        return self.body(x)


def test_clones_are_separate_and_the_optimizer_state_is_forked():
    data = DataSource(boring_dataset(64), batch_size=16)
    for make in (lambda: BoringModel(), lambda: _NeedsArgs(24)):
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_steps(model, opt, data, uniform(data.all_indices()), sample_gradients=64, ledger=Ledger(), seed=0,
                    loss_fn=nn.CrossEntropyLoss())
        before = {k: v.clone() for k, v in model.state_dict().items()}
        opt_before = opt.state_dict()["state"][0]["exp_avg"].clone()
        for factory in (None, make):
            twin = clone_model(model, factory)
            twin_opt = clone_optimizer(opt, model, twin)
            assert twin_opt.state_dict()["state"][0]["exp_avg"].equal(opt_before)
            train_steps(twin, twin_opt, data, uniform(data.all_indices()), sample_gradients=64, ledger=Ledger(),
                        seed=1, loss_fn=nn.CrossEntropyLoss())
            assert any(not torch.equal(before[k], v) for k, v in twin.state_dict().items())
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            assert opt.state_dict()["state"][0]["exp_avg"].equal(opt_before)
