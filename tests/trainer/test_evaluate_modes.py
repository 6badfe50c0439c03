"""An evaluation gives every submodule its own train/eval flag back: a BatchNorm the user froze (eval
inside a training model) is still frozen after validation, and the run trains exactly as one whose layer
was never evaluated would in that respect."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset


def test_validation_leaves_a_frozen_batchnorm_frozen():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    model[1].eval()  # frozen statistics, the rest trains
    frozen_mean = model[1].running_mean.clone()
    trainer = Trainer("t", "eval-modes", max_epochs=2, seed=0, serve=False, verbose=False)
    trainer.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                DataLoader(boring_dataset(100, seed=1), batch_size=20, shuffle=True),
                val_loader=DataLoader(boring_dataset(40, seed=2), batch_size=20))
    assert model.training and not model[1].training
    assert torch.equal(model[1].running_mean, frozen_mean)  # epoch 2 ran after the first validation
