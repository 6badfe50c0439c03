"""attach_lightning: one call before ``trainer.fit`` and a Lightning script is watched and steerable.

    trainer = L.Trainer(max_epochs=10)
    attach_lightning(trainer=trainer, model=model, project="mnist", run_name="baseline")
    trainer.fit(model, train_loader, val_loader)          # unchanged
"""

from __future__ import annotations

import logging
from typing import Any

from onthefly.integrations.lightning.callback import OnTheFlyCallback
from onthefly.integrations.lightning.samples import find_loss

log = logging.getLogger("onthefly")


def attach_lightning(trainer: Any, model: Any = None, project: str = "default", run_name: str = "run", *,
                     guard: bool = False, **options: Any) -> OnTheFlyCallback:
    """Add an OnTheFlyCallback to ``trainer`` (a ``lightning.pytorch.Trainer``) and return it.

    ``model`` (the LightningModule about to be fit) lets problems surface now rather than at fit time.
    ``guard=True`` adds a NumericsGuard (skip, snapshot and pause on a non-finite loss or gradient).
    Other options are OnTheFlyCallback's: ``loss_fn`` (the loss module the steps call, when it cannot be
    found), ``step_fn`` (``(module, batch, loss_fn)`` -> loss | (pred, target) | StepOutput, for test
    passes and health probes on batches that are not ``(inputs, target)``), ``test_loader`` (for "test
    now"), ``port``, ``start_paused``, ``hooks``, ``per_sample_loss``, ``serve``, ``verbose``, ...
    ``sessions``: the run's session store (checkpoints, export), as with the native Trainer: True (default)
    for a default ``onthefly.sessions.Sessions``, a configured ``Sessions(...)``, or False for none.
    """
    if any(isinstance(cb, OnTheFlyCallback) for cb in trainer.callbacks):
        raise ValueError("this Trainer already has OnTheFly attached; attach it once")
    if guard:
        from onthefly.health.guard import NumericsGuard

        options["hooks"] = [*options.get("hooks", []), NumericsGuard()]
    if model is not None and options.get("loss_fn") is None and options.get("step_fn") is None \
            and find_loss(model) is None:
        log.info("onthefly: %s has no nn.Module loss attribute; per-sample losses need training_step to return "
                 "{'loss': ..., 'per_sample_loss': ...}, and test-now/health probes need loss_fn= or step_fn=",
                 type(model).__name__)
    callback = OnTheFlyCallback(project, run_name, **options)
    trainer.callbacks.append(callback)
    return callback
