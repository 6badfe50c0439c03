"""The README quickstart, as written: a tiny model trained with a live, steerable server.

Run it, then in another terminal: `onthefly watch`, `onthefly pause`, `onthefly set lr=0.01`, ...
"""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly import quickstart

# toy dataset
X = torch.randn(4096, 28 * 28)
y = (X[:, :50].sum(dim=1) > 0).long()
ds = TensorDataset(X, y)
train = DataLoader(ds, batch_size=128, shuffle=True)
val = DataLoader(ds, batch_size=256)
test = DataLoader(ds, batch_size=256)

# tiny model
model = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 2))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss = nn.CrossEntropyLoss()

result = quickstart(
    project="mnist-demo",
    run_name="baseline",
    model=model,
    optimizer=opt,
    loss_fn=loss,
    train_loader=train,
    val_loader=val,
    test_loader=test,
    max_epochs=1,
    do_test_after=True,
)
print(f"trained {result.steps} steps; test loss {result.test.loss:.4f}, accuracy {result.test.metrics['accuracy']:.3f}")
