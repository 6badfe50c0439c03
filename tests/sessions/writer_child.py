"""Child of the kill -9 test: trains a ~4 MB model (Adam: 12 MB of state) and checkpoints at every step (ring
of 3). It prints each step just before that step's checkpoint is written, until it is killed."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from onthefly import RunHook, Trainer
from onthefly.sessions import Sessions


class Report(RunHook):
    def on_step_end(self, ctx):
        print(f"step {ctx.step}", flush=True)


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 256))
    data = TensorDataset(torch.randn(512, 256), torch.randn(512, 256))
    loader = DataLoader(data, batch_size=32, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sessions = Sessions(every_n_steps=1, keep=3, on_pause=False)
    Trainer("t", "killed", max_steps=10**6, serve=False, verbose=False, hooks=[Report(), sessions]).fit(
        model, opt, torch.nn.MSELoss(), loader)


if __name__ == "__main__":
    sys.exit(main())
