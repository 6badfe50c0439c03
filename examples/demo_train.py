"""The demo's training script: an MLP on synthetic digits, with validation and a final test."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset, random_split

from onthefly import Trainer

if __name__ == "__main__":
    torch.manual_seed(0)
    X = torch.randn(20_000, 28 * 28)
    y = (X[:, :50].sum(dim=1) > 0).long() + 2 * (X[:, 50:100].sum(dim=1) > 0).long()
    train_set, val_set, test_set = random_split(TensorDataset(X, y), [16_000, 2_000, 2_000])
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    Trainer(project="demo", run_name="mlp", max_epochs=6, verbose=False).fit(
        model, optimizer, nn.CrossEntropyLoss(),
        DataLoader(train_set, batch_size=64, shuffle=True),
        val_loader=DataLoader(val_set, batch_size=500),
        test_loader=DataLoader(test_set, batch_size=500),
        scheduler=scheduler, do_test_after=True,
    )
