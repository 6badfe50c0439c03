"""CPU cost of one tracking call on the training thread, with no write running: the hot path alone.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_metric_call.py [--calls 200000] [--runs 7]

bench_tracking.py measures whole bursts (the writer thread included), whose figures move with the
machine's load by more than a change to the hot path costs. This one sets batch_size and max_pending
beyond the calls made, so no write starts, and reports the training thread's CPU time per call, the
minimum over --runs loops (the least disturbed one), for: a no-op f(loss=x, step=i) (the floor: Python's
call cost), m.log(loss=x, step=i) (plain numbers: the C chunk path where built), m.log with a string field
(a dict row) and tracks(...).append(x=x). Ratio: against the floor measured in the same run. Run it on
two checkouts (PYTHONPATH) in turn to compare them.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def _noop(**fields):
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    from onthefly.tracking import Experiment, hotpath

    n = args.calls
    exp = Experiment(prefix="bench/metric-call/x", dash_root=tempfile.mkdtemp(prefix="otf-bench-call-"),
                     durable=False, flush_interval=3600, batch_size=10 * n * args.runs,
                     max_pending=100 * n * args.runs)
    exp.run.start()
    m, t = exp.metrics("train"), exp.tracks("pose")

    def floor():
        for i in range(n):
            _noop(loss=0.5, step=i)

    def numbers():
        for i in range(n):
            m.log(loss=0.5, step=i)

    def with_text():
        for i in range(n):
            m.log(loss=0.5, phase="train")

    def track():
        for i in range(n):
            t.append(x=0.5)

    best = {}
    for _ in range(args.runs):  # interleaved, so a slow phase of the machine hits every variant alike
        for name, loop in (("no-op call (floor)", floor), ("m.log(loss=x, step=i)", numbers),
                           ("m.log(loss=x, phase='train')", with_text), ("tracks('pose').append(x=x)", track)):
            t0 = time.thread_time()
            loop()
            best[name] = min(best.get(name, float("inf")), (time.thread_time() - t0) / n * 1e9)
    print(f"# hot path: {hotpath.IMPLEMENTATION}; {args.runs} runs x {n:,d} calls; training-thread CPU ns per call "
          "(min over runs)")
    base = best["no-op call (floor)"]
    for name, ns in best.items():
        print(f"{name:32s} {ns:8.1f} ns   {ns / base:5.2f}x floor")
    exp.run.complete()


if __name__ == "__main__":
    main()
