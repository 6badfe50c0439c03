"""The canonical tiny setup: a small MLP classifier on synthetic, seeded data.

Use it in tests and bug reports so that everyone runs the same thing:

    model, optimizer, loss_fn, loader = boring_setup(seed=0)
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


def boring_dataset(n: int = 256, features: int = 16, classes: int = 3, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes].argmax(dim=1)).long()
    return TensorDataset(x, y)


class BoringModel(nn.Sequential):
    """Linear -> ReLU -> Dropout -> Linear; dropout makes RNG use visible in equality tests."""

    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))


def boring_setup(seed: int = 0, n: int = 256, batch_size: int = 16, num_workers: int = 0, lr: float = 0.05,
                 dataset: Dataset | None = None):
    """(model, optimizer, loss_fn, train_loader), seeded so two calls give identical starting points."""
    torch.manual_seed(seed)
    dataset = dataset if dataset is not None else boring_dataset(n, seed=seed)
    model = BoringModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
    return model, optimizer, nn.CrossEntropyLoss(), loader
