"""The Fisher merge computes the generalist's Fisher on the generalist itself: afterwards every submodule has
its own train/eval flag back (a BatchNorm the user froze stays frozen)."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from onthefly.demos.boring import boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.merges.fisher import diagonal_fisher, fisher_merge
from onthefly.lab.train_steps import DataSource, replay


def _generalist() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    model[1].eval()  # frozen statistics, the rest trains
    return model


def test_the_fisher_leaves_each_modules_mode():
    model = _generalist()
    modes = [m.training for m in model.modules()]
    diagonal_fisher(model, DataSource(boring_dataset(100, seed=1), 20), np.arange(50), n_samples=20)
    assert [m.training for m in model.modules()] == modes


def test_a_fisher_merge_leaves_the_generalists_modes():
    generalist = _generalist()
    modes = [m.training for m in generalist.modules()]
    fisher_merge(generalist, [copy.deepcopy(generalist)], optimizer=torch.optim.Adam(generalist.parameters()),
                 data=DataSource(boring_dataset(100, seed=1), 20), mix=replay(np.arange(40), np.arange(40, 100), 0.5),
                 ledger=Ledger(200), seed=0, n_samples=20, loss_fn=nn.CrossEntropyLoss())
    assert [m.training for m in generalist.modules()] == modes
