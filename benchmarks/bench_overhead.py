"""Overhead of OnTheFly on a plain PyTorch loop, per-sample streaming rate, and pause latency.

    .venv/bin/python benchmarks/bench_overhead.py [--reps 5] [--steps 400]

1. Overhead: an MLP 784-256-10, batch 128, CPU, 1 torch thread. The bare loop and the same loop
   under Trainer (with one subscriber process streaming every event) run interleaved, R times each;
   the median of per-rep ratios of per-step times is printed (target <= 1.03), in wall time and in the
   training thread's CPU time (``time.thread_time``; less sensitive to other load on a shared machine).
   Their difference per step (wall - CPU) is the time the training thread was not running: waiting for
   the GIL held by the server's threads, or for a core. ``bench_instructions.py`` counts its instructions.
2. Per-sample values streamed to one subscriber process, end to end through a real Trainer with a
   tiny model and large batches (target >= 5 M values/s).
3. Pause latency: Pause RPC round trips from a client process during training, against the step time
   (target: p99 within one step + 5 ms), beside the round trip of an empty GetStatus at the same moments
   (the floor any unary call to the training process has on this machine). Printed twice: p99 minus the
   median step, and the p99 of each Pause's latency minus the duration of the very step it waited for
   (the step that ended where the receipt says it was applied), which steps slower than the median (the
   first one after a resume runs with cold caches) do not inflate.

BENCH_ONLY=attribute runs only the overhead, against variants that leave one part out (no server; a
server with no subscriber; no per-sample loss or grad norm), to show where it goes.
BENCH_ONLY=fixed measures the same variants on a tiny model (8 -> 2, batch 4), in microseconds added per
step: the fixed per-step cost, which carries over to any model (ratio ~ 1 + fixed / step time) and can
be compared across changes and machines (use --steps 3000). On a shared 2-core VM its quartiles still
spread by about +-50%.
BENCH_ONLY=overhead runs only part 1, BENCH_ONLY=streaming only the streaming figures, BENCH_ONLY=pause only the
pause latency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-bench-"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from onthefly import RunHook, Trainer  # noqa: E402
from onthefly.client import RunClient  # noqa: E402
from onthefly.v1 import control_pb2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def make_data(n: int, features: int = 784, classes: int = 10, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return TensorDataset(x, torch.randint(0, classes, (n,), generator=g))


def make_model(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def voluntary_switches() -> int | None:
    """How often the calling thread has blocked so far (Linux: a lock, the GIL, I/O), or None elsewhere."""
    try:
        with open("/proc/thread-self/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def bare_loop(loader, steps: int, model_factory=make_model, switches: dict | None = None,
              on_step=None) -> list[float]:
    """Per-step (wall, CPU) stamps; with ``switches``, the thread's voluntary context switches at the end of
    the steps it names (read only there: reading them costs tens of microseconds); ``on_step(n)`` is called
    after step n."""
    model, opt, loss_fn = model_factory()
    stamps = []
    done = 0
    while done < steps:
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            stamps.append((time.perf_counter(), time.thread_time()))
            done += 1
            if switches is not None and done in switches:
                switches[done] = voluntary_switches()
            if on_step is not None:
                on_step(done)
            if done == steps:
                break
    return stamps


class Stamps(RunHook):
    def __init__(self, switches: dict | None = None) -> None:
        self.stamps: list[tuple[float, float, int]] = []  # (perf_counter, thread_time, step) at each step end
        self.switches = switches  # as in bare_loop

    def on_step_end(self, ctx) -> None:
        self.stamps.append((time.perf_counter(), time.thread_time(), ctx.step))
        if self.switches is not None and ctx.step in self.switches:
            self.switches[ctx.step] = voluntary_switches()


def start_subscriber(trainer: Trainer) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_subscriber.py"), trainer.address, trainer.token],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "connected"
    return proc


def trainer_loop(loader, steps: int, model_factory=make_model, subscribe: bool = True, switches: dict | None = None,
                 **trainer_kwargs):
    """Train under Trainer with one subscriber process (or none); returns (step stamps, subscriber summary)."""
    model, opt, loss_fn = model_factory()
    stamps = Stamps(switches)
    serve = trainer_kwargs.pop("serve", True)
    trainer = Trainer("bench", "overhead", max_steps=steps, port=0, start_paused=serve, hooks=[stamps],
                      verbose=False, capture_logging=False, serve=serve, **trainer_kwargs)
    if not serve:
        trainer.fit(model, opt, loss_fn, loader)
        return stamps.stamps, {"events": 0, "gaps": 0}
    fit = threading.Thread(target=trainer.fit, args=(model, opt, loss_fn, loader))
    fit.start()
    trainer.ready.wait(30)
    sub = start_subscriber(trainer) if subscribe else None
    with RunClient(trainer.address, trainer.token) as client:
        # The subscriber is connected before the first step: it sees every event.
        client.control.Resume(control_pb2.ResumeRequest())
    fit.join()
    if sub is None:
        return stamps.stamps, {"events": 0, "gaps": 0}
    summary = json.loads(sub.communicate(timeout=120)[0].strip().splitlines()[-1])
    return stamps.stamps, summary


# Where the overhead goes (BENCH_ONLY=attribute): the full setup against variants that leave one part out.
VARIANTS = {
    "no server": dict(serve=False),
    "server, no subscriber": dict(subscribe=False),
    "no per-sample, no grad norm": dict(per_sample_loss=False, track_grad_norm=False),
    "full (one subscriber)": dict(),
}


def bench_attribution(reps: int, steps: int, loader=None, model_factory=make_model,
                      compare=lambda side, bare: side / bare) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Median (and quartiles) over reps of ``compare(variant, bare)`` per-step times (default: the ratio),
    wall and training-thread CPU, every side interleaved in random order."""
    import random

    loader = loader or DataLoader(make_data(steps * 128), batch_size=128, shuffle=True)
    warmup = min(20, steps // 10)
    names = ["bare (noise floor)", *VARIANTS]
    results: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    order = random.Random(1)
    for _ in range(reps):
        sides = ["bare", *names]
        order.shuffle(sides)
        stamps = {side: trainer_loop(loader, steps, model_factory, **VARIANTS[side])[0] if side in VARIANTS
                  else bare_loop(loader, steps, model_factory) for side in sides}
        for name in names:
            for clock, key in ((0, "wall"), (1, "cpu")):
                results[name][key].append(compare(per_step(stamps[name], warmup, clock),
                                                  per_step(stamps["bare"], warmup, clock)))
    return {name: {key: _quartiles(values) for key, values in r.items()} for name, r in results.items()}


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(8, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss()


def bench_fixed(reps: int, steps: int) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Microseconds a step costs more under Trainer than bare, on a model so small (8 -> 2, batch 4)
    that the step is almost all per-step bookkeeping: the fixed cost OnTheFly adds to any step. The
    ratio on the reference model is about 1 + fixed / step."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(steps * 4, 8, generator=g), torch.randint(0, 2, (steps * 4,), generator=g))
    loader = DataLoader(data, batch_size=4, shuffle=True)
    return bench_attribution(reps, steps, loader, tiny_model, compare=lambda side, bare: (side - bare) * 1e6)


def per_step(stamps: list[tuple[float, float]], warmup: int, clock: int = 0) -> float:
    """Seconds per step after ``warmup`` steps: wall time (clock 0) or the training thread's CPU time (1)."""
    return (stamps[-1][clock] - stamps[warmup][clock]) / (len(stamps) - 1 - warmup)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    values = sorted(values)
    return values[len(values) // 4], statistics.median(values), values[(3 * len(values)) // 4]


def bench_overhead(reps: int, steps: int) -> dict:
    """Each rep runs the bare loop twice and the Trainer once, in random order, so drift and noise on
    a shared VM hit all sides alike. The figure is the median of per-rep ratios trainer/bare, in wall
    time and in the training thread's CPU time (less sensitive to other load on the machine); the
    bare/bare ratio of the same reps is the noise floor of the measurement itself."""
    import random

    loader = DataLoader(make_data(steps * 128), batch_size=128, shuffle=True)
    warmup = min(20, steps // 10)
    ratios, controls, cpu_ratios, cpu_controls, bare_steps, hosted_steps = [], [], [], [], [], []
    not_running: dict[str, list[float]] = {"bare": [], "trainer": []}  # wall - CPU per step
    blocked: dict[str, list[float]] = {"bare": [], "trainer": []}
    events = gaps = 0
    order = random.Random(0)
    for _ in range(reps):
        sides = ["bare", "control", "trainer"]
        order.shuffle(sides)
        stamps = {}
        for side in sides:
            switches = {warmup + 1: None, steps: None} if side in blocked else None
            if side == "trainer":
                stamps[side], summary = trainer_loop(loader, steps, switches=switches)
                events, gaps = summary["events"], gaps + summary["gaps"]
            else:
                stamps[side] = bare_loop(loader, steps, switches=switches)
            if switches is not None and None not in switches.values():
                blocked[side].append((switches[steps] - switches[warmup + 1]) / (steps - warmup - 1))
        wall = {side: per_step(st, warmup) for side, st in stamps.items()}
        cpu = {side: per_step(st, warmup, 1) for side, st in stamps.items()}
        for side in not_running:
            not_running[side].append(wall[side] - cpu[side])
        bare_steps.append(wall["bare"])
        hosted_steps.append(wall["trainer"])
        ratios.append(wall["trainer"] / wall["bare"])
        controls.append(wall["control"] / wall["bare"])
        cpu_ratios.append(cpu["trainer"] / cpu["bare"])
        cpu_controls.append(cpu["control"] / cpu["bare"])
    return {"bare_ms_per_step": statistics.median(bare_steps) * 1e3,
            "trainer_ms_per_step": statistics.median(hosted_steps) * 1e3,
            "ratio": _quartiles(ratios), "control": _quartiles(controls),
            "cpu_ratio": _quartiles(cpu_ratios), "cpu_control": _quartiles(cpu_controls),
            "subscriber_events": events, "subscriber_gaps": gaps,
            "blocked_per_step": {side: statistics.median(v) for side, v in blocked.items() if v},
            "not_running_us": {side: statistics.median(v) * 1e6 for side, v in not_running.items()}}


class TensorBatches:
    """A batch sampler yielding each batch's indices as one int64 tensor (a shuffled epoch)."""

    def __init__(self, n: int, batch: int) -> None:
        self.n, self.batch = n, batch

    def __iter__(self):
        order = torch.randperm(self.n)
        for i in range(0, self.n - self.batch + 1, self.batch):
            yield order[i : i + self.batch]

    def __len__(self) -> int:
        return self.n // self.batch


def bench_streaming(steps: int = 300, batch: int = 16384) -> dict:
    data = make_data(steps * batch // 4, features=8, classes=2)
    # Whole-batch tensor indexing: per-item collate (or a list of Python ints) would spend 15-100 ms
    # a batch here and measure the DataLoader instead of the stream.
    loader = DataLoader(data, batch_size=None, sampler=TensorBatches(len(data), batch))
    stamps, summary = trainer_loop(loader, steps, model_factory=tiny_model, track_grad_norm=False)
    span = summary["last"] - summary["first"]
    return {"values": summary["values"], "seconds": span, "values_per_second": summary["values"] / span,
            "gaps": summary["gaps"], "training_values_per_second": steps * batch / (stamps[-1][0] - stamps[0][0])}


def bench_stream_capacity(events: int = 600, batch: int = 16384) -> dict:
    """The stream alone: a run's history holds ``events`` batches of per-sample losses; one
    subscriber process reads them all (server encoding, gRPC transport, client decoding)."""
    import numpy as np

    from onthefly.runtime.bus import EventBus
    from onthefly.runtime.events import Event, EventKind, SampleLosses
    from onthefly.runtime.run import Run
    from onthefly.server.host import start_server

    run = Run("bench", "capacity", EventBus(history_events=events + 16, history_bytes=1 << 40))
    server = start_server(run, port=0)
    rng = np.random.default_rng(0)
    for step in range(events):
        run.bus.publish(Event(EventKind.SAMPLE_LOSSES, step, 0, 0.0, SampleLosses(
            "train", rng.permutation(batch).astype(np.int64), rng.random(batch, dtype=np.float32))))
    run.bus.close()  # everything is in history; the stream ends after the last event

    class _T:  # start_subscriber wants an object with address/token
        address, token = f"127.0.0.1:{server.port}", server.token

    summary = json.loads(start_subscriber(_T).communicate(timeout=300)[0].strip().splitlines()[-1])
    server.stop(1)
    span = summary["last"] - summary["first"]
    return {"values": summary["values"], "seconds": span, "values_per_second": summary["values"] / span}


def bench_pause(pauses: int = 200) -> dict:
    """Pause latency as a client in another process sees it (the CLI, the dashboard).

    Training runs on a thread here while the main thread only waits for the client process, so no client
    code in this process competes with training for the GIL.
    """
    loader = DataLoader(make_data(128 * 200), batch_size=128, shuffle=True)
    model, opt, loss_fn = make_model()
    stamps = Stamps()
    trainer = Trainer("bench", "pause", max_steps=10**9, port=0, hooks=[stamps], verbose=False)
    fit = threading.Thread(target=trainer.fit, args=(model, opt, loss_fn, loader))
    fit.start()
    trainer.ready.wait(30)
    client = subprocess.run([sys.executable, os.path.join(HERE, "_pauser.py"), trainer.address, trainer.token,
                             str(pauses)], stdout=subprocess.PIPE, text=True, timeout=600, check=True)
    fit.join()
    result = json.loads(client.stdout.strip().splitlines()[-1])
    step = statistics.median(b[0] - a[0] for a, b in zip(stamps.stamps, stamps.stamps[1:]))

    def p(values, q):
        values = sorted(values)
        return values[int(q * (len(values) - 1))]

    latencies, status = result["pause"], result["status"]
    # The step each pause waited for: the one that ended at the boundary where it was applied (its receipt's
    # step). It started when the step before it ended, or when the loop was resumed after the previous pause
    # (taken as the moment the client's Resume returned: later than the real restart, so a step counts as
    # shorter and the excess below as larger than they are). perf_counter is CLOCK_MONOTONIC, shared by
    # both processes.
    ends = {s: t for t, _, s in stamps.stamps}
    excess = []
    for latency, applied, sent, resumed_before in zip(latencies, result["applied_step"], result["sent"],
                                                      [None] + result["resumed"][:-1]):
        if applied in ends and applied - 1 in ends:
            start = ends[applied - 1] if resumed_before is None else max(ends[applied - 1], resumed_before)
            excess.append(latency - (ends[applied] - start))
    return {"step_ms": step * 1e3, "pause_p50_ms": p(latencies, 0.5) * 1e3, "pause_p99_ms": p(latencies, 0.99) * 1e3,
            "p99_minus_step_ms": (p(latencies, 0.99) - step) * 1e3,
            "excess_p50_ms": p(excess, 0.5) * 1e3, "excess_p99_ms": p(excess, 0.99) * 1e3, "excess_n": len(excess),
            "status_p50_ms": p(status, 0.5) * 1e3, "status_p99_ms": p(status, 0.99) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU")
    only = os.environ.get("BENCH_ONLY")
    if only in ("attribute", "fixed"):
        # Ratios variant/bare, or microseconds a step costs more than bare on the tiny model.
        bench, label, fmt, unit = ((bench_attribution, "attribution", "{:.3f}", " ratio") if only == "attribute"
                                   else (bench_fixed, "fixed cost", "{:+.1f}", " us/step"))
        f = fmt.format
        for name, r in bench(args.reps, args.steps).items():
            (q1, med, q3), (c1, cmed, c3) = r["wall"], r["cpu"]
            print(f"[{label}] {name:<30} wall{unit} {f(med)} (quartiles {f(q1)}..{f(q3)}); "
                  f"training-thread CPU{unit} {f(cmed)} ({f(c1)}..{f(c3)})")
        return
    if only == "pause":
        print_pause(bench_pause())
        return
    if only == "streaming":
        print(bench_stream_capacity())
        print(bench_streaming())
        return
    print_overhead(bench_overhead(args.reps, args.steps), args.reps)
    if only == "overhead":
        return
    c = bench_stream_capacity()
    print(f"[stream capacity] {c['values']:,} per-sample values to one subscriber process in {c['seconds']:.2f} s -> "
          f"{c['values_per_second'] / 1e6:.1f} M values/s (target >= 5)")
    s = bench_streaming()
    print(f"[live training] tiny model, batch 16384: training produced {s['training_values_per_second'] / 1e6:.2f} M "
          f"per-sample values/s; the subscriber received {s['values']:,} at {s['values_per_second'] / 1e6:.2f} M/s, "
          f"missed {s['gaps']} (here the training loop, not the stream, is the limit)")
    print_pause(bench_pause())


def print_overhead(o: dict, reps: int) -> None:
    q1, med, q3 = o["ratio"]
    c1, cmed, c3 = o["control"]
    print(f"[overhead] bare {o['bare_ms_per_step']:.3f} ms/step, Trainer+subscriber {o['trainer_ms_per_step']:.3f} "
          f"ms/step -> ratio {med:.4f} (target <= 1.03; quartiles {q1:.3f}..{q3:.3f} over {reps} reps); "
          f"noise floor bare/bare {cmed:.4f} ({c1:.3f}..{c3:.3f}); the subscriber got "
          f"{o['subscriber_events']} events per run, {o['subscriber_gaps']} missed in all")
    q1, med, q3 = o["cpu_ratio"]
    c1, cmed, c3 = o["cpu_control"]
    print(f"[overhead] training-thread CPU time per step: ratio {med:.4f} (quartiles {q1:.3f}..{q3:.3f}); noise floor "
          f"{cmed:.4f} ({c1:.3f}..{c3:.3f})")
    if o["blocked_per_step"]:
        b = o["blocked_per_step"]
        print(f"[overhead] the training thread blocked (voluntary context switches: the GIL, a lock) "
              f"{b.get('bare', float('nan')):.3f} times a step bare, {b.get('trainer', float('nan')):.3f} under Trainer")
    n = o["not_running_us"]
    print(f"[overhead] the training thread was not running (wall - CPU time: waiting for the GIL or a core) "
          f"{n['bare']:.1f} us a step bare, {n['trainer']:.1f} us under Trainer")


def print_pause(p: dict) -> None:
    print(f"[pause] step {p['step_ms']:.3f} ms; Pause RPC from another process p50 {p['pause_p50_ms']:.3f} ms, "
          f"p99 {p['pause_p99_ms']:.3f} ms -> p99 - step = {p['p99_minus_step_ms']:.3f} ms (target <= 5); "
          f"an empty GetStatus in the same run: p50 {p['status_p50_ms']:.3f} ms, p99 {p['status_p99_ms']:.3f} ms")
    print(f"[pause] each Pause against the step it waited for (latency - that step's duration, {p['excess_n']} "
          f"pauses): p50 {p['excess_p50_ms']:.3f} ms, p99 {p['excess_p99_ms']:.3f} ms (target <= 5)")


if __name__ == "__main__":
    main()
