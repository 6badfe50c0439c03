"""Sessions: the local store, checkpoints, and export/import of a whole run as one bundle file.

    from onthefly.sessions import Sessions, export_session
    trainer = Trainer(project="p", run_name="r", max_steps=1000)
    trainer.fit(model, optimizer, loss_fn, loader)
    export_session(trainer, "r.onthefly")                     # keep the run
    Trainer(project="p", run_name="r2", max_steps=2000).fit(model, optimizer, loss_fn, loader,
                                                            resume_from="r.onthefly")
"""

from __future__ import annotations

import os
from typing import Any

from onthefly.sessions.attach import attach_sessions


def sessions_of(run_or_trainer: Any):
    """The Sessions hook of a Run or Trainer (None if it has none)."""
    from onthefly.sessions.hook import Sessions

    run = getattr(run_or_trainer, "run", None) if not hasattr(run_or_trainer, "hooks") else run_or_trainer
    if run is None:
        return None
    return next((h for h in run.hooks.hooks if isinstance(h, Sessions)), None)


def export_session(run_or_trainer: Any, path: str | os.PathLike, overwrite: bool = False):
    """Export the session of a Trainer (or Run) to one bundle file; returns a BundleInfo."""
    from onthefly.runtime.errors import FailedPrecondition

    sessions = sessions_of(run_or_trainer)
    if sessions is None:
        raise FailedPrecondition("this run has no session: has fit() started?")
    return sessions.export(path, overwrite)


def __getattr__(name: str):
    lazy = {
        "Sessions": ("onthefly.sessions.hook", "Sessions"),
        "Store": ("onthefly.sessions.store", "Store"),
        "Bundle": ("onthefly.sessions.bundle", "Bundle"),
        "BundleError": ("onthefly.sessions.bundle", "BundleError"),
        "BundleInfo": ("onthefly.sessions.bundle", "BundleInfo"),
        "CheckpointInfo": ("onthefly.sessions.checkpoint", "CheckpointInfo"),
        "read_bundle": ("onthefly.sessions.session", "read_bundle"),
    }
    if name not in lazy:
        raise AttributeError(f"module 'onthefly.sessions' has no attribute {name!r}")
    import importlib

    module, attr = lazy[name]
    return getattr(importlib.import_module(module), attr)


__all__ = ["Sessions", "Store", "Bundle", "BundleError", "BundleInfo", "CheckpointInfo", "attach_sessions",
           "export_session", "read_bundle", "sessions_of"]
