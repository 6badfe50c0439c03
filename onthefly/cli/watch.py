"""`onthefly watch`: a live terminal view of a run (progress, loss sparkline, state, throughput, drops)."""

from __future__ import annotations

import collections
import math
import shutil
import sys
import time
from dataclasses import dataclass, field

from onthefly.cli.events_text import event_line, state_name
from onthefly.v1 import telemetry_pb2

SPARK = "▁▂▃▄▅▆▇█"
WATCH_KINDS = [telemetry_pb2.EVENT_KIND_STEP_METRICS, telemetry_pb2.EVENT_KIND_EVAL_RESULT,
               telemetry_pb2.EVENT_KIND_LIFECYCLE, telemetry_pb2.EVENT_KIND_COMMAND,
               telemetry_pb2.EVENT_KIND_RUNTIME_STATS, telemetry_pb2.EVENT_KIND_LOG]


def sparkline(values: list[float], width: int) -> str:
    values = [v for v in values[-width:] if math.isfinite(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in values)


def progress_bar(done: int, total: int, width: int) -> str:
    if total <= 0:
        return ""
    frac = min(1.0, done / total)
    filled = int(frac * width)
    return "[" + "█" * filled + "░" * (width - filled) + f"] {frac * 100:5.1f}%"


@dataclass
class WatchState:
    """Everything the view shows, updated from stream frames."""

    title: str = ""
    state: str = "UNKNOWN"
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    losses: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    lr: float = float("nan")
    grad_norm: float = float("nan")
    throughput: float = 0.0
    last_seq: int = 0
    dropped_at_source: int = 0
    gap_events: int = 0
    cpu: float = float("nan")
    rss: int = 0
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=5))
    commands: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4))
    finished: bool = False

    def update(self, frame: telemetry_pb2.SubscribeResponse) -> None:
        self.dropped_at_source = frame.dropped_at_source
        if frame.HasField("gap"):
            self.gap_events += frame.gap.last_seq - frame.gap.first_seq + 1
        for event in frame.events:
            self.last_seq = event.seq
            self.step, self.epoch = event.step, event.epoch
            kind = event.WhichOneof("payload")
            if kind == "step_metrics":
                m = event.step_metrics
                self.losses.append(m.loss)
                self.lr, self.grad_norm, self.throughput = m.lr, m.grad_norm, m.samples_per_second
            elif kind == "runtime":
                self.cpu, self.rss = event.runtime.cpu_percent, event.runtime.rss_bytes
            elif kind == "lifecycle":
                self.state = state_name(event.lifecycle.state)
                if event.lifecycle.HasField("identity"):
                    ident = event.lifecycle.identity
                    self.title = f"{ident.project}/{ident.run_name}"
                if self.state in ("FINISHED", "FAILED"):
                    self.finished = True
                self.recent.append(event_line(event))
            elif kind == "command":
                self.commands.append(event_line(event))
            elif kind in ("eval_result", "log"):
                self.recent.append(event_line(event))

    def render(self, width: int = 100) -> str:
        width = max(60, width)
        loss = self.losses[-1] if self.losses else float("nan")
        total = f"/{self.total_steps}" if self.total_steps else ""
        lines = [
            f"{self.title or 'onthefly run'}  {self.state}  step {self.step}{total}  epoch {self.epoch}",
            progress_bar(self.step, self.total_steps, width - 12) if self.total_steps else "",
            f"loss {loss:.5g}  {sparkline(list(self.losses), width - 20)}",
            f"lr {self.lr:.3g}  grad_norm {self.grad_norm:.3g}  {self.throughput:,.0f} samples/s"
            f"  cpu {self.cpu:.0f}%  rss {self.rss / 2**20:.0f}MiB",
            f"seq {self.last_seq}  dropped at source {self.dropped_at_source}  missed (gaps) {self.gap_events}",
            *[line[: width - 1] for line in self.commands],
            *[line[: width - 1] for line in self.recent],
        ]
        return "\n".join(line for line in lines if line != "")


def run_watch(client, total_steps: int, title: str, out=sys.stdout, interval: float = 0.2) -> WatchState:
    """Stream and redraw in place until the run ends (or Ctrl-C)."""
    state = WatchState(title=title, total_steps=total_steps)
    drawn_lines = 0
    last_draw = 0.0
    tty = out.isatty()
    request = telemetry_pb2.SubscribeRequest(kinds=WATCH_KINDS)
    try:
        for frame in client.telemetry.Subscribe(request):
            state.update(frame)
            now = time.monotonic()
            if now - last_draw >= interval or state.finished:
                text = state.render(shutil.get_terminal_size((100, 20)).columns)
                if tty and drawn_lines:
                    out.write(f"\x1b[{drawn_lines}F\x1b[J")
                out.write(text + "\n")
                out.flush()
                drawn_lines = text.count("\n") + 1
                last_draw = now
    except KeyboardInterrupt:
        pass
    return state
