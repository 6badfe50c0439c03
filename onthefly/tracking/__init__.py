"""Experiment tracking: ML-Dash's API (experiments, params, logs, metrics, tracks, files), stored as
Arrow/Parquet in a local folder or on an ``onthefly serve`` server, written by a background thread.

    from onthefly.tracking import Experiment
    with Experiment(prefix="alice/resnet/run-1", dash_root=".dash").run as exp:
        exp.params.set(lr=1e-3, model={"depth": 4})
        exp.metrics("train").log(loss=0.4, epoch=3)

The native Trainer records a run into it with ``Trainer(..., track=True)`` (see ``onthefly.trainer.tracking``).
"""

from __future__ import annotations

from onthefly.tracking.errors import (BufferFull, FailedPrecondition, InvalidArgument, NotFound, NotRunning,
                                      PermissionDenied, TrackingError, Unauthenticated)
from onthefly.tracking.experiment import Experiment, RunManager
from onthefly.tracking.records import ExperimentRecord, FileRecord, Status, StreamInfo, StreamKind

__all__ = [
    "BufferFull", "Experiment", "ExperimentRecord", "FailedPrecondition", "FileRecord", "InvalidArgument",
    "NotFound", "NotRunning", "PermissionDenied", "RunManager", "Status", "StreamInfo", "StreamKind",
    "TrackingError", "Unauthenticated",
]
