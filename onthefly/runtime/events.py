"""Domain events a run publishes. Plain data; the server's convert module maps them to protobuf.

Payload fields may hold detached torch tensors when published from the training thread; the bus's
pump thread resolves them to Python floats / numpy arrays (see ``resolve``) so the training thread
never waits for a device-to-host copy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class RunState(enum.IntEnum):
    """Lifecycle state of a run (same numbering as onthefly.v1.RunState)."""

    STARTING = 1
    RUNNING = 2
    PAUSED = 3
    TESTING = 4
    FINISHED = 5
    FAILED = 6


class EventKind(enum.IntEnum):
    """Kinds of events (same numbering as onthefly.v1.EventKind)."""

    STEP_METRICS = 1
    SAMPLE_LOSSES = 2
    EVAL_RESULT = 3
    LOG = 4
    RUNTIME_STATS = 5
    LIFECYCLE = 6
    COMMAND = 7


class LifecycleKind(enum.IntEnum):
    """State changes (same numbering as onthefly.v1.LifecycleKind)."""

    STARTED = 1
    PAUSED = 2
    RESUMED = 3
    TEST_STARTED = 4
    TEST_FINISHED = 5
    FINISHED = 6
    FAILED = 7
    EPOCH_STARTED = 8


@dataclass(frozen=True, slots=True)
class RunIdentity:
    project: str
    run_name: str
    run_id: str
    pid: int


@dataclass(slots=True)
class StepMetrics:
    loss: Any  # float or 0-dim tensor until resolved
    lr: float
    grad_norm: Any  # float, 0-dim tensor, or None
    samples_per_second: float
    batch_size: int
    step_seconds: float
    data_seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def resolve(self) -> None:
        self.loss = _to_float(self.loss)
        self.grad_norm = float("nan") if self.grad_norm is None else _to_float(self.grad_norm)


@dataclass(slots=True)
class SampleLosses:
    """One batch's per-sample losses and their dataset indices (int64 numpy arrays of equal length once
    resolved). Published from the training thread as they come: ``indices`` as the sampler yielded them
    (a list, a tensor, an int, or None), mapped through ``index_map`` (loader index -> base dataset index)
    when resolved; indices that cannot be read, or do not match the losses one to one, become -1."""

    split: str
    indices: Any
    losses: Any  # np.ndarray[float32] (or tensor) once resolved
    index_map: Any = None

    def resolve(self) -> None:
        self.losses = losses = _to_numpy(self.losses, np.float32).reshape(-1)
        indices = base_indices(self.indices, self.index_map)
        self.indices = indices if indices is not None and len(indices) == len(losses) else \
            np.full(len(losses), -1, dtype=np.int64)

    def nbytes(self) -> int:
        return int(getattr(self.losses, "nbytes", 0)) + int(getattr(self.indices, "nbytes", 0))


@dataclass(slots=True)
class EvalResult:
    split: str
    loss: float
    samples: int
    metrics: dict[str, float]
    seconds: float
    reason: str


@dataclass(slots=True)
class LogRecord:
    level: int  # Python logging level number
    logger: str
    message: str


@dataclass(slots=True)
class GpuStats:
    index: int
    name: str
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    torch_allocated_bytes: int


@dataclass(slots=True)
class RuntimeStats:
    cpu_percent: float
    rss_bytes: int
    gpus: list[GpuStats]
    dropped_at_source: int
    threads: int


@dataclass(slots=True)
class Lifecycle:
    kind: LifecycleKind
    state: RunState
    message: str = ""
    identity: RunIdentity | None = None


@dataclass(slots=True)
class CommandApplied:
    command_id: int
    name: str
    applied: bool
    detail: str


@dataclass(slots=True)
class Event:
    """One published event. ``seq`` is assigned by the bus at publish time."""

    kind: EventKind
    step: int
    epoch: int
    time: float
    payload: Any
    seq: int = 0
    # The torch.distributed rank that produced the event (rank 0 republishes the other ranks' events).
    rank: int = 0
    # Opaque per-event cache for the transport layer (its encoded form), so an event is encoded once
    # however many subscribers read it. Domain code never reads it.
    encoded: Any = None

    def resolve(self) -> None:
        resolve = getattr(self.payload, "resolve", None)
        if resolve is not None:
            resolve()

    def nbytes(self) -> int:
        size = getattr(self.payload, "nbytes", None)
        return 96 + (size() if size is not None else 0)


def _to_float(value: Any) -> float:
    if hasattr(value, "value"):  # a PendingCopy from host_values
        return float(value.value())
    if hasattr(value, "item"):
        return float(value.item())
    return float(value)


def base_indices(index: Any, index_map: np.ndarray | None) -> np.ndarray | None:
    """An index batch as a sampler yielded it (a list, a tensor, an int) as int64 base-dataset indices,
    mapped through ``index_map`` (loader index -> base index) when given; None when it cannot be read."""
    if index is None:
        return None
    try:
        index = _to_numpy(index, np.int64).reshape(-1)
        return index_map[index] if index_map is not None else index
    except (TypeError, ValueError, IndexError):
        return None


def _to_numpy(value: Any, dtype: Any) -> np.ndarray:
    if hasattr(value, "value"):  # a PendingCopy from host_values
        value = value.value()
    if isinstance(value, np.ndarray):
        return value.astype(dtype, copy=False)
    if hasattr(value, "detach"):  # a tensor, handed over as it was (a CPU tensor needs no copy)
        if value.requires_grad:
            value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        try:
            array = value.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            array = value.float().numpy()
        return array.astype(dtype, copy=False)
    return np.asarray(value, dtype=dtype)
