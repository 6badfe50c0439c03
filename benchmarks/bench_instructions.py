"""Instructions the training thread executes per step, bare and under Trainer, counted by valgrind.

    .venv/bin/python benchmarks/bench_instructions.py [--steps 20]

Wall and CPU time on a shared VM spread by +-10% from run to run (see bench_overhead.py's noise floor),
which hides a 3% overhead. An instruction count does not: callgrind counts what the training thread
executes over the same measured steps of the reference loop (MLP 784-256-10, batch 128, 1 torch thread),
whatever else runs on the machine. It is not a time: it leaves out cache misses, waits for the GIL and
whatever other threads (the bus's pump, the server, the subscriber) take from the core. The gap between
this ratio and bench_overhead.py's time ratio is what those cost on the machine at hand.

Each side runs in its own process under ``valgrind --tool=callgrind`` with instrumentation off until
step 10 (imports and warm-up are not counted); training runs on the main thread (valgrind's thread 1).
Valgrind replaces the CPU's vector units by its own (AVX-512 kernels fall back to AVX2), so the counts
are of the code paths valgrind's virtual CPU selects. About 4 minutes a side; two sides at a time.
Needs valgrind (Debian: ``apt-get install valgrind``); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

WARMUP = 10  # steps before counting starts

# name -> Trainer arguments (None: the bare loop)
SIDES = {
    "bare": None,
    "Trainer, no per-sample loss or grad norm, no server": dict(serve=False, per_sample_loss=False,
                                                                track_grad_norm=False),
    "Trainer, no server": dict(serve=False),
    "Trainer + one subscriber (the target's setup)": dict(),
}


def side_main(name: str, steps: int) -> None:
    """In the child process under valgrind: run one side, counting only its measured steps."""
    os.environ.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-bench-"))
    import torch
    from torch.utils.data import DataLoader

    import bench_overhead as b

    torch.set_num_threads(1)
    pid = str(os.getpid())

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, pid], stdout=subprocess.DEVNULL, check=True)

    def at(step: int) -> None:
        if step == WARMUP:
            control("--instr=on")
            control("--zero")
        elif step == WARMUP + steps:
            control("--dump=measured")
            control("--instr=off")

    loader = DataLoader(b.make_data((WARMUP + steps + 5) * 128), batch_size=128, shuffle=True)
    kwargs = SIDES[name]
    if kwargs is None:
        b.bare_loop(loader, WARMUP + steps, on_step=at)
        return

    class Count(b.RunHook):
        def on_step_end(self, ctx) -> None:
            at(ctx.step)

    # Not bench_overhead.trainer_loop: it runs fit on a thread of its own when serving.
    model, opt, loss_fn = b.make_model()
    serve = kwargs.get("serve", True)
    trainer = b.Trainer("bench", "instructions", max_steps=WARMUP + steps, port=0, start_paused=serve,
                        hooks=[Count()], verbose=False, capture_logging=False, **kwargs)
    sub: list = []
    if serve:  # connect the subscriber from a helper thread: training stays on valgrind's thread 1
        def connect() -> None:
            trainer.ready.wait(600)
            sub.append(b.start_subscriber(trainer))
            with b.RunClient(trainer.address, trainer.token) as client:
                client.control.Resume(b.control_pb2.ResumeRequest())

        helper = threading.Thread(target=connect, daemon=True)
        helper.start()
    trainer.fit(model, opt, loss_fn, loader)
    if sub:
        sub[0].communicate(timeout=600)


def count(name: str, steps: int, folder: str) -> int:
    """Instructions the training thread executed over the measured steps of one side."""
    out = os.path.join(folder, f"side{list(SIDES).index(name)}")
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                    f"--callgrind-out-file={out}", sys.executable, os.path.abspath(__file__),
                    "--side", name, "--steps", str(steps)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for path in glob.glob(out + ".*-01"):  # dumps of thread 1, the training thread
        with open(path) as f:
            text = f.read()
        if "Trigger: dump measured" in text:
            return int(re.search(r"^summary: (\d+)", text, re.M).group(1))
    raise RuntimeError(f"no measured dump for {name!r} in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args.side, args.steps)
        return
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is not installed (Debian: apt-get install valgrind); nothing measured")
        return
    with tempfile.TemporaryDirectory(prefix="onthefly-callgrind-") as folder, ThreadPoolExecutor(2) as pool:
        counts = dict(zip(SIDES, pool.map(lambda name: count(name, args.steps, folder), SIDES)))
    bare = counts["bare"] / args.steps
    print(f"[instructions] training thread, MLP 784-256-10, batch 128, {args.steps} steps after {WARMUP} of warm-up")
    for name, total in counts.items():
        per_step = total / args.steps
        print(f"[instructions] {name:<52} {per_step / 1e6:8.3f} M/step  ratio {per_step / bare:.4f}  "
              f"({(per_step - bare) / 1e3:+.0f} k/step)")


if __name__ == "__main__":
    main()
