"""OnTheFly: watch and steer a PyTorch training run while it runs.

    from onthefly import Trainer
    Trainer(project="demo", run_name="baseline", max_epochs=3).fit(model, optimizer, loss_fn, train_loader)
"""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401  (must precede any grpc import)

__version__ = "0.1.0"

# Lazy exports keep `import onthefly` (and the CLI) fast: torch loads only when a trainer is used.
_EXPORTS = {
    "Trainer": ("onthefly.trainer.trainer", "Trainer"),
    "FitResult": ("onthefly.trainer.trainer", "FitResult"),
    "StepOutput": ("onthefly.trainer.forward", "StepOutput"),
    "quickstart": ("onthefly.trainer.quickstart", "quickstart"),
    "RunHook": ("onthefly.runtime.hooks", "RunHook"),
    "connect": ("onthefly.client", "connect"),
    "attach_lightning": ("onthefly.integrations.lightning.attach", "attach_lightning"),
    "OnTheFlyCallback": ("onthefly.integrations.lightning.callback", "OnTheFlyCallback"),
    "Experiment": ("onthefly.tracking.experiment", "Experiment"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'onthefly' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value
