"""quickstart(...): the one-call form of Trainer(...).fit(...) from the README."""

from __future__ import annotations

from typing import Any

from onthefly.trainer.trainer import FitResult, Trainer


def quickstart(
    project: str,
    run_name: str,
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    train_loader: Any,
    val_loader: Any = None,
    test_loader: Any = None,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    do_test_after: bool = False,
    scheduler: Any = None,
    device: Any = None,
    **trainer_options: Any,
) -> FitResult:
    """Train ``model`` with a live, steerable server; ``trainer_options`` go to Trainer(...)."""
    if max_epochs is None and max_steps is None:
        max_epochs = 1
    trainer = Trainer(project=project, run_name=run_name, max_epochs=max_epochs, max_steps=max_steps,
                      **trainer_options)
    return trainer.fit(model, optimizer, loss_fn, train_loader, val_loader=val_loader, test_loader=test_loader,
                       scheduler=scheduler, device=device, do_test_after=do_test_after)
