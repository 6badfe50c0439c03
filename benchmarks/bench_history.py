"""What a dashboard attaching late to a 10^6-step run waits for: GetMetricHistory against a real server.

A paused Trainer (the canonical tiny model) is given a 10^6-step metric history (through the same
restore path a checkpoint uses), then a client times GetMetricHistory for the loss at chart resolution
(2000 buckets), all six step series, and a zoom. The baseline, measured in the same run, is the one
RPC a server without downsampling would answer: the whole loss series, every point (built and
serialised in-process, so it does not even include the wire). Prints the times and their ratios.
Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_history.py [--steps N] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch

from onthefly import Trainer
from onthefly.client import connect
from onthefly.demos.boring import boring_setup
from onthefly.sessions import sessions_of
from onthefly.v1 import control_pb2, history_pb2, history_pb2_grpc


def history_state(n: int) -> dict:
    rng = np.random.default_rng(0)
    steps = np.arange(1, n + 1, dtype=np.int64)
    loss = 2.0 * np.exp(-steps / (n / 5)) + 0.01 * rng.random(n)
    loss[rng.integers(0, n, 20)] = 50.0  # twenty one-step spikes
    col = torch.from_numpy
    return {"step": col(steps), "epoch": col(steps // 1000), "loss": col(loss),
            **{name: col(rng.random(n)) for name in ("lr", "grad_norm", "samples_per_second", "step_seconds",
                                                       "data_seconds")}}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    model, opt, loss_fn, loader = boring_setup(seed=0)
    trainer = Trainer("bench", "history", max_steps=10, port=0, start_paused=True, verbose=False)
    thread = threading.Thread(target=trainer.fit, args=(model, opt, loss_fn, loader), daemon=True)
    thread.start()
    assert trainer.ready.wait(60), "the trainer did not start"
    state = history_state(args.steps)
    with connect(address=trainer.address, token=trainer.token) as client:
        deadline = time.monotonic() + 60
        while sessions_of(trainer) is None or sessions_of(trainer).session is None:
            assert time.monotonic() < deadline, "the session did not open"
            time.sleep(0.01)
        sessions_of(trainer).session.history.load_metric_state(state)
        stub = history_pb2_grpc.HistoryServiceStub(client.channel)

        def ask(**request):
            return stub.GetMetricHistory(history_pb2.GetMetricHistoryRequest(**request), timeout=60)

        ask(names=["loss"])  # warm the channel
        loss_t, answer = timed(lambda: ask(names=["loss"], buckets=2000), args.repeat)
        all_t, everything = timed(lambda: ask(buckets=2000), args.repeat)
        zoom_t, zoom = timed(lambda: ask(names=["loss"], start_step=args.steps // 2, end_step=args.steps // 2 + 1500,
                                         buckets=2000), args.repeat)

        def whole_series():
            return history_pb2.MetricSeries(name="loss", steps=state["step"].tolist(),
                                            values=state["loss"].tolist()).SerializeToString()

        raw_t, raw = timed(whole_series, args.repeat)
        series = answer.series[0]
        spikes_kept = int(np.sum(np.asarray(series.values) == 50.0))
        spikes = int(np.sum(state["loss"].numpy() == 50.0))
        client.control.Stop(control_pb2.StopRequest())
    thread.join(60)
    print(f"history of {args.steps:,} steps, median of {args.repeat}:")
    print(f"  loss at 2000 buckets: {loss_t * 1e3:.1f} ms, {len(series.steps)} points, "
          f"{answer.ByteSize() / 1024:.0f} KiB, spikes kept {spikes_kept}/{spikes}")
    print(f"  all {len(everything.series)} series at 2000 buckets: {all_t * 1e3:.1f} ms")
    print(f"  zoom to 1501 steps: {zoom_t * 1e3:.1f} ms, {len(zoom.series[0].steps)} points (every step)")
    print(f"  baseline, whole loss series serialised without downsampling: {raw_t * 1e3:.1f} ms, "
          f"{len(raw) / 2**20:.1f} MiB")
    print(f"  ratio loss query / baseline: {loss_t / raw_t:.3f}")


if __name__ == "__main__":
    main()
