"""Session export and import time against plain torch.save / torch.load of the same state.

    .venv/bin/python benchmarks/bench_sessions.py [--reps 5] [--mb 100] [--optimizer adam] [--dir DIR]

One run, CPU. A model of about ``--mb`` MB of float32 parameters is trained one step under a real
Trainer (so the optimizer has state), then, interleaved, ``--reps`` times each:

- ``torch.save``: ``torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, f)``
  (no fsync: what most scripts do);
- ``torch.save + fsync``: the same, then fsync (what a crash-safe write costs at least);
- export: ``Sessions.export(path)``, the public Python call behind ``ExportSession``/``onthefly export``:
  captures the state now, streams it into one bundle (tensors checksummed by the CRC-32s torch.save
  writes into its archive, so no extra pass; other files by a CRC-32), writes the manifest, fsyncs
  (disk writeback started while writing) and renames atomically;
- ``torch.load``: ``torch.load(f, weights_only=True)`` then ``load_state_dict`` on model and optimizer;
- import: ``Sessions.import_session(path)``, behind ``ImportSession``/``onthefly import``: checks the
  bundle's structure, loads the tensors with ``torch.load(weights_only=True)`` while checking every
  record's CRC from the bytes it reads (other files on a helper thread), checks compatibility and swaps
  the state into the run.

Each cell is the median over the reps; ratios are medians of export (import) over the baseline's.
Target (issue 3): export and import <= 1.2x plain torch.save / torch.load. The files are written
under ``--dir`` (default: a temporary folder); on a disk other jobs use too, figures vary between runs,
so the per-rep spread (min-max) is printed beside the medians. Checksums use ISA-L's or zlib-ng's
CRC-32 when ``isal`` or ``zlib-ng`` is installed (same values, ~5x faster than zlib's); the header
line says which ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-bench-"))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from onthefly import Trainer  # noqa: E402
from onthefly.sessions import Sessions  # noqa: E402
from onthefly.sessions import digest  # noqa: E402


def make_model(mb: float, width: int = 2048) -> nn.Module:
    """An MLP of ``width``-wide layers with about ``mb`` MB of float32 parameters."""
    per_layer = (width * width + width) * 4
    layers: list[nn.Module] = []
    for _ in range(max(1, round(mb * 1e6 / per_layer))):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for s in opt.state_dict()["state"].values():
        total += sum(t.numel() * t.element_size() for t in s.values() if isinstance(t, torch.Tensor))
    return total


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mb", type=float, default=100.0, help="model size in MB of float32 parameters")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = tempfile.mkdtemp(prefix="onthefly-bench-sessions-", dir=args.dir)
    torch.manual_seed(0)
    model = make_model(args.mb)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    data = TensorDataset(torch.randn(8, 2048), torch.randint(0, 10, (8,)))
    sessions = Sessions(store=os.path.join(work, "store"), keep=1, on_pause=False, after_test=False,
                        record_samples=False)
    trainer = Trainer(project="bench", run_name="sessions", max_steps=1, serve=False, verbose=False,
                      hooks=[sessions])
    trainer.fit(model, opt, nn.CrossEntropyLoss(), DataLoader(data, batch_size=8), device="cpu")
    size = state_bytes(model, opt)

    plain = os.path.join(work, "plain.pt")
    bundle = os.path.join(work, "run.onthefly")

    def save() -> None:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, plain)

    def save_fsync() -> None:
        with open(plain, "wb") as f:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())

    def load() -> None:
        state = torch.load(plain, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])

    def export() -> None:
        sessions.export(bundle, overwrite=True)

    def import_() -> None:
        sessions.import_session(bundle)

    names = ["torch.save", "torch.save + fsync", "export", "torch.load", "import"]
    fns = [save, save_fsync, export, load, import_]
    times: dict[str, list[float]] = {n: [] for n in names}
    export(), save()  # warm-up: first-touch allocations, imports
    for rep in range(args.reps):
        # Interleaved: every rep measures each operation once, rotating which goes first.
        order = list(range(len(names)))
        order = order[rep % 3:3] + order[:rep % 3] + order[3:]  # rotate the writers; loads follow their files
        for i in order:
            times[names[i]].append(timed(fns[i]))
    bundle_size = os.path.getsize(bundle)
    plain_size = os.path.getsize(plain)

    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"Session export/import vs torch.save/torch.load: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"params ({args.optimizer}), state {size / 1e6:.0f} MB; torch.save file {plain_size / 1e6:.0f} MB, "
          f"bundle {bundle_size / 1e6:.0f} MB; {args.reps} interleaved reps, torch threads "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}; CRC-32 by {digest.CRC32_BY}; files in {work}")
    print(f"{'operation':<22}{'median s':>10}{'min s':>9}{'max s':>9}{'MB/s':>8}")
    for n in names:
        v = times[n]
        print(f"{n:<22}{med[n]:>10.3f}{min(v):>9.3f}{max(v):>9.3f}{size / 1e6 / med[n]:>8.0f}")
    ex, im = med["export"] / med["torch.save"], med["import"] / med["torch.load"]
    print(f"export / torch.save          {ex:.2f}x   (target <= 1.2x: {'met' if ex <= 1.2 else 'NOT met'})")
    print(f"export / (torch.save+fsync)  {med['export'] / med['torch.save + fsync']:.2f}x")
    print(f"import / torch.load          {im:.2f}x   (target <= 1.2x: {'met' if im <= 1.2 else 'NOT met'})")
    for p in (plain, bundle):
        os.unlink(p)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
