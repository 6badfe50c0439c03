"""A Lightning DDP fit (CPU, gloo, 2 processes) with OnTheFly attached; run as a script by test_ddp.py.

Lightning's subprocess launcher starts rank 1 by running this same script again. Each rank writes
rank<N>.json into the directory given as argv[1]: whether it served, the learning rate of every step,
the steps at which it paused, and a fingerprint of its final weights.
"""

from __future__ import annotations

import json
import os
import sys

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring, quiet_trainer_kwargs
from onthefly.lightning import attach_lightning
from onthefly.runtime.hooks import RunHook


class StepLr(Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


class Pauses(RunHook):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_pause(self, ctx) -> None:
        self.steps.append(ctx.step)


def main(out: str) -> None:
    L.seed_everything(0)
    model = LitBoring()
    trainer = L.Trainer(max_steps=10_000, **quiet_trainer_kwargs(out, devices=2, strategy="ddp"))
    lrs, pauses = StepLr(), Pauses()
    trainer.callbacks.append(lrs)  # before OnTheFly's: records the lr each step ran with
    callback = attach_lightning(trainer=trainer, model=model, project="ddp", run_name="lit", port=0, verbose=False,
                                start_paused=True, heartbeat=0.2, hooks=[pauses])
    trainer.fit(model, DataLoader(boring_dataset(256), batch_size=8, shuffle=True))
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    report = {"rank": trainer.global_rank, "pid": os.getpid(), "served": callback.server is not None,
              "server_code_loaded": "onthefly.server.host" in sys.modules,
              "steps": trainer.global_step, "lrs": lrs.rows, "pauses": pauses.steps,
              "weights": weights.tolist()}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
