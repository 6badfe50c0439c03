"""Distillation reads the generalist as a teacher and trains a copy of it as the run trains: the generalist
keeps every submodule's own train/eval flag, and a BatchNorm the user froze stays frozen in the student."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from onthefly.demos.boring import boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.merges.distill import distill_merge
from onthefly.lab.train_steps import DataSource, uniform


def test_distillation_keeps_each_modules_mode():
    torch.manual_seed(0)
    generalist = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    generalist[1].eval()  # frozen statistics, the rest trains
    specialist = copy.deepcopy(generalist)
    modes = [m.training for m in generalist.modules()]
    result = distill_merge(generalist, [specialist], optimizer=torch.optim.Adam(generalist.parameters(), lr=1e-2),
                           data=DataSource(boring_dataset(100, seed=1), 20), mix=uniform(np.arange(100)),
                           ledger=Ledger(200), seed=0, region_indices=[np.arange(40)])
    assert [m.training for m in generalist.modules()] == modes
    student = result.model
    assert [m.training for m in student.modules()] == modes
    assert torch.equal(student[1].running_mean, generalist[1].running_mean)
    assert not torch.equal(student[0].weight, generalist[0].weight)  # it did train
