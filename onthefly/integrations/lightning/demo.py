"""Tiny LightningModules for tests and bug reports: the boring MLP with its loss as a module attribute
(the case OnTheFly hooks by itself) and one whose loss is not a single loss(pred, target) call."""

from __future__ import annotations

import lightning.pytorch as L
import torch
from torch import nn

from onthefly.demos.boring import BoringModel


class LitBoring(L.LightningModule):
    """BoringModel + ``self.loss_fn = nn.CrossEntropyLoss()`` + SGD with momentum."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.net = BoringModel()
        self.loss_fn = nn.CrossEntropyLoss()
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.loss_fn(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class LitCustomLoss(LitBoring):
    """A regularised loss computed inline; per-sample values come back from training_step (the documented hook)."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(lr)
        del self.loss_fn

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        per_sample = nn.functional.cross_entropy(logits, y, reduction="none") + 0.01 * logits.pow(2).mean(dim=1)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}

    def validation_step(self, batch, batch_idx):
        pass


def quiet_trainer_kwargs(root: str, **overrides) -> dict:
    """lightning.pytorch.Trainer arguments for a quiet CPU run: no logger, checkpoints, bars or sanity pass."""
    kwargs = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root)
    kwargs.update(overrides)
    return kwargs
