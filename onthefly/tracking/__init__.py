"""Experiment tracking: ML-Dash's API (experiments, params, logs, metrics, tracks, files), stored as
Arrow/Parquet in a local folder or on an ``onthefly serve`` server, written by a background thread.

    from onthefly.tracking import Experiment
    with Experiment(prefix="alice/resnet/run-1", dash_root=".dash").run as exp:
        exp.params.set(lr=1e-3, model={"depth": 4})
        exp.metrics("train").log(loss=0.4, epoch=3)

A script written for ML-Dash runs with its import switched (``from onthefly.tracking import ...`` for
``from ml_dash import ...``); README's "Coming from ML-Dash" lists what differs on purpose.
The native Trainer records a run into it with ``Trainer(..., track=True)`` (see ``onthefly.trainer.tracking``).
"""

from __future__ import annotations

from onthefly.tracking.compat import LogLevel, OperationMode, ml_dash_experiment
from onthefly.tracking.errors import (AuthenticationError, BufferFull, ConfigurationError, ExperimentError,
                                      FailedPrecondition, InvalidArgument, MlDashError, NetworkError, NotFound,
                                      NotRunning, PermissionDenied, StorageError, TrackingError, Unauthenticated)
from onthefly.tracking.experiment import Experiment, RunManager
from onthefly.tracking.logs import LogBuilder
from onthefly.tracking.params import ParamsBuilder
from onthefly.tracking.records import ExperimentRecord, FileRecord, Status, StreamInfo, StreamKind
from onthefly.tracking.runinfo import RUN

ParametersBuilder = ParamsBuilder

__all__ = [
    "AuthenticationError", "BufferFull", "ConfigurationError", "Experiment", "ExperimentError",
    "ExperimentRecord", "FailedPrecondition", "FileRecord", "InvalidArgument", "LogBuilder", "LogLevel",
    "MlDashError", "NetworkError", "NotFound", "NotRunning", "OperationMode", "ParametersBuilder",
    "ParamsBuilder", "PermissionDenied", "RUN", "RunManager", "Status", "StorageError", "StreamInfo",
    "StreamKind", "TrackingError", "Unauthenticated", "ml_dash_experiment",
]
