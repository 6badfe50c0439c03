"""What each per-step piece of Trainer costs the training thread, measured step by step within one run.

    .venv/bin/python benchmarks/bench_features.py [--steps 3000] [--reps 3]

The reference loop (MLP 784-256-10, batch 128, CPU, 1 torch thread) runs with one piece switched on for
even steps and off for odd steps, using the library's own functions as the Trainer calls them. A piece's
cost is the median time of its even steps minus that of its odd steps (a step: from the end of the one
before, data loading included). The VM's speed drifts by 10-50% between runs here, which hides a 1%
effect in run-against-run ratios; drift hits both halves of one run alike, so this difference does not
move with it. Pieces:

- grad norm: ``grad_norm(params)`` after backward, before ``optimizer.step()``;
- per-sample loss: ``PerSampleLoss.of_loss`` (read off the loss's graph, for CrossEntropyLoss);
- per-sample loss + events: that, plus the step's two events (``SampleLosses`` with ``array_later``,
  ``StepMetrics`` with ``scalar_later``) published on a live ``EventBus``;
- all: grad norm, per-sample loss and both events, as a Trainer step adds them.

Not in these figures: the Trainer's own loop bookkeeping (hooks, control, the loader's index tap), and the
GIL time of the bus's pump and the server's threads, which falls on even and odd steps alike
(``bench_overhead.py``'s ``BENCH_ONLY=attribute`` shows those).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from onthefly.runtime.bus import EventBus
from onthefly.runtime.events import Event, EventKind, SampleLosses, StepMetrics
from onthefly.runtime.grad_norm import grad_norm
from onthefly.runtime.host_values import array_later, scalar_later
from onthefly.runtime.per_sample import PerSampleLoss

from bench_overhead import make_data, make_model  # beside this script (on sys.path when run as one)

PIECES = {  # name -> (grad norm, per-sample loss, events)
    "grad norm": (True, False, False),
    "per-sample loss": (False, True, False),
    "per-sample loss + events": (False, True, True),
    "all": (True, True, True),
}
WARMUP = 50


def run_piece(piece: str, steps: int, loader) -> tuple[float, float]:
    """(median step with the piece on, median step with it off), in seconds."""
    norm_on, per_sample_on, events_on = PIECES[piece]
    model, opt, loss_fn = make_model()
    params = list(model.parameters())
    per_sample = PerSampleLoss(loss_fn)
    bus = EventBus() if events_on else None
    times: tuple[list[float], list[float]] = ([], [])  # (on, off)
    done = 0
    last = time.perf_counter()
    try:
        while done < steps:
            for x, y in loader:
                on = done % 2 == 0
                opt.zero_grad()
                pred = model(x)
                loss = loss_fn(pred, y)
                values = per_sample.of_loss(loss, pred, y) if on and per_sample_on else None
                loss.backward()
                if on and events_on:
                    bus.publish(Event(EventKind.SAMPLE_LOSSES, done, 0, time.time(),
                                      SampleLosses("train", None, array_later(values))))
                norm = grad_norm(params) if on and norm_on else None
                opt.step()
                if on and events_on:
                    bus.publish(Event(EventKind.STEP_METRICS, done, 0, time.time(), StepMetrics(
                        scalar_later(loss), opt.param_groups[0]["lr"], scalar_later(norm), 0.0, len(y), 0.0, 0.0)))
                now = time.perf_counter()
                if done >= WARMUP:
                    times[0 if on else 1].append(now - last)
                last = now
                done += 1
                if done == steps:
                    break
    finally:
        if bus is not None:
            bus.close()
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loader = DataLoader(make_data(300 * 128), batch_size=128, shuffle=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU; {args.steps} steps a run, "
          f"even steps with the piece, odd without; median over {args.reps} runs")
    for piece in PIECES:
        costs, steps = [], []
        for _ in range(args.reps):
            on, off = run_piece(piece, args.steps, loader)
            costs.append(on - off)
            steps.append(off)
        cost, step = statistics.median(costs), statistics.median(steps)
        print(f"[features] {piece:<26} {cost * 1e6:+7.1f} us a step = {cost / step * 100:+.2f}% of a "
              f"{step * 1e3:.3f} ms step (runs: {', '.join(f'{c * 1e6:+.0f}' for c in costs)} us)")


if __name__ == "__main__":
    main()
