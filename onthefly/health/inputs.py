"""CheckInput: what every check receives — the loop context, the monitor and shared probe batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onthefly.health.probe import probe_batches

if TYPE_CHECKING:
    from onthefly.health.monitor import HealthMonitor
    from onthefly.runtime.context import LoopContext


@dataclass
class CheckInput:
    ctx: "LoopContext"
    monitor: "HealthMonitor | None"
    batches: int = 4
    _cache: list[Any] = field(default_factory=list)
    _seconds_per_batch: float | None = None

    def probe(self, count: int) -> list[Any]:
        """``count`` probe batches (built once per command and shared by the checks)."""
        if len(self._cache) < count:
            self._cache, self._seconds_per_batch = probe_batches(self.ctx, count)
        return self._cache[:count]

    @property
    def seconds_per_batch(self) -> float:
        """Seconds to load and collate one batch in the training process (measured by ``probe``)."""
        if self._seconds_per_batch is None:
            self.probe(1)
        return float(self._seconds_per_batch or 0.0)
