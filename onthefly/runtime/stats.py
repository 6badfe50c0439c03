"""Runtime statistics: process CPU and memory, and GPUs through nvidia-ml-py when present.

Sampled on a background thread once a second; the training thread never calls into this module.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import TYPE_CHECKING

from onthefly.runtime.events import EventKind, GpuStats, RuntimeStats

if TYPE_CHECKING:
    from onthefly.runtime.run import Run


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS is the best portable figure
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


class _Nvml:
    """Lazy nvidia-ml-py wrapper; ``available`` is False when the library or a GPU is missing."""

    def __init__(self) -> None:
        self.available = False
        self._handles: list = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.available = bool(self._handles)
        except Exception:
            self.available = False

    def sample(self) -> list[GpuStats]:
        if not self.available:
            return []
        nv = self._nvml
        out = []
        for i, handle in enumerate(self._handles):
            try:
                util = nv.nvmlDeviceGetUtilizationRates(handle)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                name = nv.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else name
                out.append(GpuStats(i, name, float(util.gpu), int(mem.used), int(mem.total), _torch_allocated(i)))
            except Exception:
                continue
        return out


def _torch_allocated(index: int) -> int:
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return int(torch.cuda.memory_allocated(index))
    except Exception:
        pass
    return 0


class StatsSampler:
    """Publishes a RuntimeStats event every ``interval`` seconds until stopped."""

    def __init__(self, run: "Run", interval: float = 1.0) -> None:
        self._run = run
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="onthefly-stats", daemon=True)
        self._nvml: _Nvml | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling; safe to call whether or not ``start`` ran."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def sample(self, last_cpu: float, last_wall: float) -> tuple[RuntimeStats, float, float]:
        times = os.times()
        cpu = times.user + times.system
        wall = time.monotonic()
        percent = 100.0 * (cpu - last_cpu) / max(wall - last_wall, 1e-9)
        gpus = self._nvml.sample() if self._nvml else []
        stats = RuntimeStats(percent, rss_bytes(), gpus, self._run.bus.dropped_at_source, threading.active_count())
        return stats, cpu, wall

    def _loop(self) -> None:
        self._nvml = _Nvml()
        times = os.times()
        last_cpu, last_wall = times.user + times.system, time.monotonic()
        while not self._stop.wait(self._interval):
            stats, last_cpu, last_wall = self.sample(last_cpu, last_wall)
            self._run.publish(EventKind.RUNTIME_STATS, stats)
