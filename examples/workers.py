"""Training with DataLoader(num_workers=2) while clients stream: the loader is used exactly as given.

OnTheFly sets GRPC_ENABLE_FORK_SUPPORT=0 before grpc loads, so forked workers are safe while a
dashboard or `onthefly tail` streams from the run.
"""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from onthefly import Trainer


class NoisyDigits(Dataset):
    """A map-style dataset with a per-item transform, the shape most real datasets have."""

    def __init__(self, n: int = 8192) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 64, generator=g)
        self.y = (self.x[:, :8].sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * torch.randn(64), self.y[i]


if __name__ == "__main__":
    torch.manual_seed(0)
    loader = DataLoader(NoisyDigits(), batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    result = Trainer(project="examples", run_name="workers", max_epochs=3).fit(
        model, optimizer, nn.CrossEntropyLoss(), loader)
    print(f"done: {result.steps} steps over {result.epochs} epochs")
