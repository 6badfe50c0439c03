"""What OnTheFly costs a DDP job when nothing happens: 2 CPU ranks on gloo, one run.

    .venv/bin/python benchmarks/bench_distributed.py [--reps 3] [--steps 300]

Each rank runs, interleaved R times, the same DDP loop (MLP 784-256-10, batch 64 per rank, SGD) three
ways, each from the same weights: ``bare`` (the user's loop), ``broadcast`` (the bare loop plus one
broadcast of three int64 per step: the decision sharing the Lightning integration used to pay, the
mechanism we measured against) and ``trainer`` (the same loop under onthefly's Trainer; rank 0 serves).
Printed on rank 0, medians over reps:
- the step-time ratio of ``trainer`` and of ``broadcast`` against ``bare`` (wall time per step);
- the coordination cost when nothing happens, as a share of the bare step: the lockstep boundary on
  the training thread (timed over many calls below the horizon) plus the CPU time of the background
  threads that grant and read horizons (per step, summed over rank 0 and rank 1). Target <= 1%.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import tempfile
import time

os.environ.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-bench-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from torch.utils.data.distributed import DistributedSampler  # noqa: E402

from onthefly import RunHook, Trainer  # noqa: E402

WORLD = 2


def make(rank: int, steps: int):
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64 * WORLD * steps, 784, generator=g), torch.randint(0, 10, (64 * WORLD * steps,), generator=g))
    sampler = DistributedSampler(data, num_replicas=WORLD, rank=rank, shuffle=False)
    return model, optimizer, nn.CrossEntropyLoss(), DataLoader(data, batch_size=64, sampler=sampler)


def bare(model, optimizer, loss_fn, loader, broadcast: bool) -> float:
    flag = torch.zeros(3, dtype=torch.int64)
    dist.barrier()
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        if broadcast:
            dist.broadcast(flag, src=0)
            flag.tolist()
    return time.perf_counter() - start


class Clock(RunHook):
    """Times the training loop alone (not the server's start or stop)."""

    def on_fit_start(self, ctx) -> None:
        dist.barrier()
        self.start = time.perf_counter()

    def on_fit_end(self, ctx, error) -> None:
        self.seconds = time.perf_counter() - self.start


def thread_cpu(name: str) -> float:
    import threading

    total = 0.0
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


class BackgroundCpu(RunHook):
    """CPU seconds of the lockstep background threads during the loop."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on_fit_start(self, ctx) -> None:
        self._start = thread_cpu("onthefly-horizon") + thread_cpu("onthefly-directives")

    def on_fit_end(self, ctx, error) -> None:
        self.seconds = thread_cpu("onthefly-horizon") + thread_cpu("onthefly-directives") - self._start


def under_trainer(model, optimizer, loss_fn, loader, steps: int) -> tuple[float, float, float]:
    clock, cpu = Clock(), BackgroundCpu()
    trainer = Trainer("bench", "ddp", max_steps=steps, port=0, verbose=False, capture_logging=False, hooks=[clock, cpu])
    trainer.fit(model, optimizer, loss_fn, loader, device="cpu")
    return clock.seconds, cpu.seconds, boundary_seconds(trainer)


def boundary_seconds(trainer: Trainer) -> float:
    """One fast-path boundary call (below the horizon, nothing queued), timed over many calls."""
    from onthefly.distributed.lockstep import lockstep

    ctx = trainer.run.control.ctx
    coordinator = lockstep(trainer.world)
    coordinator.horizon = coordinator._refresh_at = 1 << 60  # as between two grants: nothing due
    ctx.run.control.state = ctx.run.control.state.RUNNING
    ctx.step = 1
    calls = 200_000
    start = time.perf_counter()
    for _ in range(calls):
        coordinator.boundary(ctx)
    seconds = (time.perf_counter() - start) / calls
    coordinator.close()
    return seconds


def rank_main(rank: int, port: int, reps: int, steps: int, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(minutes=5))
    torch.set_num_threads(1)
    rows = []
    bare(*make(rank, steps), broadcast=False)  # warm-up: first-touch allocations and gloo's first rounds
    for _ in range(reps):
        b = bare(*make(rank, steps), broadcast=False) / steps
        c = bare(*make(rank, steps), broadcast=True) / steps
        t, cpu, boundary = under_trainer(*make(rank, steps), steps)
        cpu_all = torch.tensor([cpu / steps])
        dist.all_reduce(cpu_all)
        rows.append((b, c, t / steps, float(cpu_all), boundary))
    if rank == 0:
        out.update(rows=rows)
        bare_step = statistics.median(r[0] for r in rows)
        print(f"bare DDP step (2 gloo ranks, rank 0): {bare_step * 1e3:.3f} ms, median of {reps} reps x {steps} steps")
        print(f"trainer / bare step time:   {statistics.median(r[2] / r[0] for r in rows):.4f}")
        print(f"broadcast / bare step time: {statistics.median(r[1] / r[0] for r in rows):.4f}  "
              "(one 3 x int64 broadcast + host read per step: the mechanism not chosen)")
        boundary = statistics.median(r[4] for r in rows)
        background = statistics.median(r[3] for r in rows)
        print(f"coordination when nothing happens: boundary {boundary * 1e6:.2f} us/step on the training thread "
              f"+ background threads {background * 1e6:.2f} us CPU/step (both ranks) = "
              f"{(boundary + background) / bare_step * 100:.3f}% of the bare step (target <= 1%)")
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank_main, args=(port, args.reps, args.steps, {}), nprocs=WORLD)


if __name__ == "__main__":
    main()
