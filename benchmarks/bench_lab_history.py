"""The lab's per-sample history at scale, and what the lab costs the training thread.

    .venv/bin/python benchmarks/bench_lab_history.py [--samples 1000000 --epochs 100 --batch 1024]
    .venv/bin/python benchmarks/bench_lab_history.py --only overhead [--reps 5 --overhead-samples 200000]

1. Scale (``--only history``): ``samples`` x ``epochs`` train losses (every sample once an epoch, shuffled,
   in batches of ``batch``) go through ``SampleHistory.observe`` exactly as the bus's pump hands them over,
   into a session folder in a temporary store; the writer thread sorts and writes the Parquet parts. Prints
   the ingest rate (pump side and until every part is on disk), the size on disk (bytes per row), and the
   latency of the queries (median and max of ``--queries`` each, after a first cold one): one sample's
   trajectory, one step's losses, and one epoch's table of the split.
2. Overhead (``--only overhead``): an MLP 784-256-10, batch 128, 1 torch thread, ``--overhead-samples``
   samples (one epoch); per rep, in random order, the bare loop, Trainer (no server; its default session),
   and Trainer with a Lab (history and sketches fed from the pump). Prints the median of per-rep ratios of
   per-step wall time and of training-thread CPU time: lab / trainer (what the lab adds) and trainer / bare,
   and the CPU time per step the lab's own threads spend (the pump in its observer, the history writer):
   the figure a loaded machine does not move much, since it is thread CPU time, not wall time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-bench-"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from onthefly.lab.history import SampleHistory  # noqa: E402
from onthefly.runtime.events import Event, EventKind, SampleLosses  # noqa: E402
from onthefly.sessions.store import Store  # noqa: E402


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def bench_history(samples: int, epochs: int, batch: int, queries: int, seed: int = 0) -> dict:
    root = tempfile.mkdtemp(prefix="onthefly-lab-history-")
    try:
        folder = Store(root).open_session()
        history = SampleHistory(folder, folder.session_id)
        rng = np.random.default_rng(seed)
        step = 0
        observe_s = 0.0
        started = time.perf_counter()
        for epoch in range(epochs):
            order = rng.permutation(samples).astype(np.int64)
            losses = rng.gamma(2.0, 0.5 / (1 + epoch), samples).astype(np.float32)
            events = []
            for start in range(0, samples, batch):
                stop = min(start + batch, samples)
                events.append(Event(EventKind.SAMPLE_LOSSES, step, epoch, 0.0,
                                    SampleLosses("train", order[start:stop], losses[start:stop])))
                step += 1
            for i in range(0, len(events), 64):  # the pump hands batches of coalesced events
                t = time.perf_counter()
                history.observe(events[i:i + 64])
                observe_s += time.perf_counter() - t
        pumped = time.perf_counter() - started
        t = time.perf_counter()
        history.flush()
        ingest = time.perf_counter() - started
        flush_s = time.perf_counter() - t
        rows = samples * epochs
        disk = _folder_bytes(str(folder.path / "history"))

        def timed(fn, n):
            fn(0)  # the first (cold) call
            times = []
            for i in range(n):
                t = time.perf_counter()
                fn(i + 1)
                times.append(time.perf_counter() - t)
            return statistics.median(times), max(times)

        pick = np.random.default_rng(seed + 1)
        traj = timed(lambda i: _check_traj(history.trajectory(int(pick.integers(samples))), epochs), queries)
        steps = step
        step_q = timed(lambda i: _check_step(history.step_losses(int(pick.integers(steps))), batch, samples), queries)
        per_epoch = -(-samples // batch)

        def epoch_table(i):
            e = int(pick.integers(epochs))
            table = history.table("train", first_step=e * per_epoch, last_step=(e + 1) * per_epoch - 1)
            assert table.num_rows == samples, table.num_rows

        table_q = timed(epoch_table, max(1, queries // 4))
        return {"rows": rows, "samples": samples, "epochs": epochs, "batch": batch, "parts": len(history.parts()),
                "observe_s": observe_s, "pumped_s": pumped, "final_flush_s": flush_s, "ingest_s": ingest,
                "disk_bytes": disk, "bytes_per_row": disk / rows,
                "trajectory_s": traj, "step_s": step_q, "epoch_table_s": table_q}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_traj(t, epochs: int) -> None:
    assert len(t.splits["train"]) == epochs, len(t.splits["train"])


def _check_step(s, batch: int, samples: int) -> None:
    assert len(s.index) in (batch, samples % batch), len(s.index)


# -- overhead ------------------------------------------------------------------------------------
class _Rows(torch.utils.data.Dataset):
    """``n`` samples of 784 features without holding n x 784 floats: row i is a fixed random row
    (of 4096) plus its label, so the model has something to learn."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.base = torch.randn(4096, 784, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.base[i % 4096] + 0.1 * self.y[i], self.y[i]


class _Spent:
    """CPU seconds the lab's own threads spend: the pump in the lab's observer, the history's writer."""

    def __init__(self) -> None:
        self.pump = 0.0
        self.writer = 0.0


def _timed_lab(spent: _Spent):
    from onthefly.lab.history import SampleHistory
    from onthefly.lab.lab import Lab

    class TimedHistory(SampleHistory):
        def _write(self, split, buffer):
            t = time.thread_time()
            try:
                super()._write(split, buffer)
            finally:
                spent.writer += time.thread_time() - t

    class TimedLab(Lab):
        def _observe(self, events):
            t = time.thread_time()
            super()._observe(events)
            spent.pump += time.thread_time() - t

        def _attach_history(self):
            import onthefly.lab.lab as lab_module

            saved = lab_module.SampleHistory
            lab_module.SampleHistory = TimedHistory
            try:
                super()._attach_history()
            finally:
                lab_module.SampleHistory = saved

    return TimedLab()


def bench_overhead(reps: int, n: int) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_overhead import Stamps, bare_loop, make_model, per_step

    from onthefly import Trainer
    from onthefly.sessions import Sessions

    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(_Rows(n), batch_size=128, shuffle=True)
    steps = len(loader)
    warmup = min(20, steps // 10)
    store = tempfile.mkdtemp(prefix="onthefly-lab-overhead-")
    ratios: dict[str, list[float]] = {"lab/trainer": [], "trainer/bare": [], "lab/bare": []}
    cpu: dict[str, list[float]] = {k: [] for k in ratios}
    ms: dict[str, list[float]] = {"bare": [], "trainer": [], "lab": []}
    cpu_ms: dict[str, list[float]] = {"bare": [], "trainer": [], "lab": []}
    pump_us: list[float] = []
    writer_us: list[float] = []
    order = random.Random(0)
    try:
        for _ in range(reps):
            sides = ["bare", "trainer", "lab"]
            order.shuffle(sides)
            stamps = {}
            for side in sides:
                if side == "bare":
                    stamps[side] = bare_loop(loader, steps)
                    continue
                model, opt, loss_fn = make_model()
                hook = Stamps()
                spent = _Spent()
                hooks = [Sessions(store=store), hook] + ([_timed_lab(spent)] if side == "lab" else [])
                Trainer("bench", side, max_steps=steps, serve=False, verbose=False, capture_logging=False,
                        hooks=hooks).fit(model, opt, loss_fn, loader)
                stamps[side] = hook.stamps
                if side == "lab":
                    pump_us.append(spent.pump / steps * 1e6)
                    writer_us.append(spent.writer / steps * 1e6)
            wall = {s: per_step(st, warmup) for s, st in stamps.items()}
            thread = {s: per_step(st, warmup, 1) for s, st in stamps.items()}
            for s in ms:
                ms[s].append(wall[s] * 1e3)
                cpu_ms[s].append(thread[s] * 1e3)
            for key in ratios:
                a, b = key.split("/")
                ratios[key].append(wall[a] / wall[b])
                cpu[key].append(thread[a] / thread[b])
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return {"samples": n, "steps": steps, "reps": reps, "ms_per_step": {k: statistics.median(v) for k, v in ms.items()},
            "cpu_ms_per_step": {k: statistics.median(v) for k, v in cpu_ms.items()},
            "lab_pump_us_per_step": statistics.median(pump_us), "lab_writer_us_per_step": statistics.median(writer_us),
            "ratio": {k: statistics.median(v) for k, v in ratios.items()},
            "cpu_ratio": {k: statistics.median(v) for k, v in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--overhead-samples", type=int, default=200_000)
    parser.add_argument("--only", choices=("history", "overhead"))
    args = parser.parse_args()
    if args.only in (None, "history"):
        h = bench_history(args.samples, args.epochs, args.batch, args.queries)
        print(f"history: {h['samples']:,} samples x {h['epochs']} epochs = {h['rows']:,} rows (batch {h['batch']}), "
              f"{h['parts']} Parquet parts")
        print(f"  ingest: {h['rows'] / h['ingest_s'] / 1e6:.2f} M rows/s until on disk ({h['ingest_s']:.1f} s; the pump "
              f"spent {h['observe_s']:.1f} s in observe, incl. waits for the writer; final flush {h['final_flush_s']:.1f} s)")
        print(f"  disk: {h['disk_bytes'] / 2**20:,.0f} MiB ({h['bytes_per_row']:.2f} bytes/row)")
        for name, key in (("one sample's trajectory", "trajectory_s"), ("one step's losses", "step_s"),
                          ("one epoch's table", "epoch_table_s")):
            med, worst = h[key]
            print(f"  {name:24} median {med * 1e3:8.1f} ms   max {worst * 1e3:8.1f} ms")
    if args.only in (None, "overhead"):
        o = bench_overhead(args.reps, args.overhead_samples)
        print(f"overhead: {o['samples']:,} samples, {o['steps']} steps a rep, {o['reps']} reps; ms/step "
              + ", ".join(f"{k} {v:.3f}" for k, v in o["ms_per_step"].items()))
        for key in o["ratio"]:
            print(f"  {key:13} wall {o['ratio'][key]:.3f}   training-thread CPU {o['cpu_ratio'][key]:.3f}")
        step_cpu = o["cpu_ms_per_step"]["trainer"] * 1e3
        print(f"  the lab's own threads, CPU per step: pump (history + sketches) {o['lab_pump_us_per_step']:.1f} us, "
              f"history writer {o['lab_writer_us_per_step']:.1f} us; the training thread runs none of it "
              f"(its CPU per step under Trainer: {step_cpu:.0f} us)")


if __name__ == "__main__":
    main()
