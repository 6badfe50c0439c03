"""Writer settings: defaults, then environment variables, then arguments (arguments win).

    ONTHEFLY_FLUSH_INTERVAL   seconds between time-triggered writes            (default 5.0)
    ONTHEFLY_BATCH_SIZE       pending items that trigger a write                (default 100)
    ONTHEFLY_MAX_PENDING      items buffered at most before the policy applies  (default 200000)
    ONTHEFLY_ON_FULL          "block" (wait for the writer) or "raise" (BufferFull)   (default block)
    ONTHEFLY_UPLOAD_WORKERS   threads that store or upload files                (default 4)
    ONTHEFLY_DURABLE          "1": fsync on flush() and close; "0": survive kill -9 only (default 1)
    ONTHEFLY_BUFFER_ENABLED   "0": every call writes before it returns          (default 1)
    ONTHEFLY_METRIC_BATCH_SIZE, ONTHEFLY_TRACK_BATCH_SIZE   ML-Dash's per-metric / per-topic triggers: the
                              write trigger becomes the smallest of these and the batch size (unset: unused)

ML-Dash's names (ML_DASH_FLUSH_INTERVAL, ML_DASH_LOG_BATCH_SIZE, ML_DASH_METRIC_BATCH_SIZE,
ML_DASH_TRACK_BATCH_SIZE, ML_DASH_FILE_UPLOAD_WORKERS, ML_DASH_BUFFER_ENABLED) are read too when ours are
not set; a malformed value raises at construction, as in ML-Dash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from onthefly.tracking.errors import InvalidArgument

ON_FULL = ("block", "raise")
_ENV = {
    "flush_interval": ("ONTHEFLY_FLUSH_INTERVAL", "ML_DASH_FLUSH_INTERVAL"),
    "batch_size": ("ONTHEFLY_BATCH_SIZE", "ML_DASH_LOG_BATCH_SIZE"),
    "max_pending": ("ONTHEFLY_MAX_PENDING",),
    "on_full": ("ONTHEFLY_ON_FULL",),
    "upload_workers": ("ONTHEFLY_UPLOAD_WORKERS", "ML_DASH_FILE_UPLOAD_WORKERS"),
    "durable": ("ONTHEFLY_DURABLE",),
    "buffered": ("ONTHEFLY_BUFFER_ENABLED", "ML_DASH_BUFFER_ENABLED"),
    "metric_batch_size": ("ONTHEFLY_METRIC_BATCH_SIZE", "ML_DASH_METRIC_BATCH_SIZE"),
    "track_batch_size": ("ONTHEFLY_TRACK_BATCH_SIZE", "ML_DASH_TRACK_BATCH_SIZE"),
}


def _bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"{name}={text!r}: use 1/true/yes/on or 0/false/no/off")


@dataclass(frozen=True)
class WriterConfig:
    """How the background writer batches, bounds and stores what the training thread logs."""

    flush_interval: float = 5.0
    batch_size: int = 100
    max_pending: int = 200_000
    on_full: str = "block"
    upload_workers: int = 4
    durable: bool = True
    buffered: bool = True
    # ML-Dash writes a metric once it has this many points pending (a topic: this many timestamps). Ours has
    # one trigger for every stream (counting per stream would cost every call), so when one of these is set
    # below the batch size it becomes the batch size: rows reach the store no later than ML-Dash's would.
    # Above it they change nothing (ours writes sooner). None or 0: unset.
    metric_batch_size: int | None = None
    track_batch_size: int | None = None

    @classmethod
    def resolve(cls, **arguments) -> "WriterConfig":
        """Defaults, overridden by environment variables, overridden by non-None ``arguments``."""
        values = {}
        for f in fields(cls):
            for env in _ENV[f.name]:
                text = os.environ.get(env)
                if text is None or text == "":
                    continue
                try:
                    if f.type in ("bool", bool):
                        values[f.name] = _bool(text, env)
                    elif f.type in ("int", int, "int | None"):
                        values[f.name] = int(text)
                    elif f.type in ("float", float):
                        values[f.name] = float(text)
                    else:
                        values[f.name] = text.strip().lower()
                except ValueError:
                    raise InvalidArgument(f"{env}={text!r} is not a valid {f.type}") from None
                break
        unknown = set(arguments) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidArgument(f"unknown writer option(s): {', '.join(sorted(unknown))}")
        sizes = [values[k] for k in ("metric_batch_size", "track_batch_size") if values.get(k)]
        if sizes and arguments.get("batch_size") is None and min(sizes) > 0:
            values["batch_size"] = min([values.get("batch_size", cls.batch_size), *sizes])
        values.update({k: v for k, v in arguments.items() if v is not None})
        return replace(cls(), **values).checked()

    def checked(self) -> "WriterConfig":
        if not self.flush_interval > 0:
            raise InvalidArgument(f"flush_interval must be > 0 seconds, got {self.flush_interval}")
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_pending < self.batch_size:
            raise InvalidArgument(f"max_pending ({self.max_pending}) must be >= batch_size ({self.batch_size})")
        if self.on_full not in ON_FULL:
            raise InvalidArgument(f"on_full must be one of {', '.join(ON_FULL)}, got {self.on_full!r} "
                                  f"(rows are never dropped silently)")
        for name in ("metric_batch_size", "track_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 0:  # ML-Dash takes 0 too
                raise InvalidArgument(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.upload_workers < 1:
            raise InvalidArgument(f"upload_workers must be >= 1, got {self.upload_workers}")
        return self
