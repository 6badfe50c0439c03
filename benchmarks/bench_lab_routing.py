"""What the routed model (fork + route as one nn.Module) costs at inference, against one generalist.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lab_routing.py --seeds 201-205 --json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lab_routing.py --seeds 201-205 --threads 0   # torch's default

Per seed of digits-shift: the generalist trains its base budget (10 epochs of sample-gradients, Adam 1e-3,
batch 64, one torch thread), the training set is scored, regions discovered, and the menu's ``fork-route``
resolution is built at E = 0.5 x base with the product's own code (``resolutions.run_menu``). On the test split
tiled (or cut) to each of ``--batches`` (``test``: the test split as it is), it prints FLOPs per sample
(``torch.utils.flop_counter``) and measured time per sample (``routing.inference_cost``: fastest of interleaved
passes, ``--threads`` torch threads) relative to the generalist, the share of samples routed to a specialist, and
checks that a weights-only save + reload with the factory and ``torch.export`` give the same predictions.
Ratios, not absolute times: both models run in the same process, alternating.

The allocator is pinned (``--allocator steady``, the default): glibc's malloc otherwise may return a pass's
large temporaries to the kernel and fault them in again on the next pass, for one model or the other depending
on the heap's layout, which made the 8192-row ratio swing between 1.1x and 1.7x from one measurement to the next
on the same models. Pinned, no pass page-faults and both sides are timed as in a warm, long-running process.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn

from onthefly.demos.lab_benchmarks import load_benchmark, make_generalist
from onthefly.lab.budget import Ledger
from onthefly.lab.regions import discover_regions
from onthefly.lab.resolutions import ROUTE, ForkPoint, run_menu
from onthefly.lab.routing import inference_cost, load_routed, save_routed
from onthefly.lab.scoring import score
from onthefly.lab.train_steps import DataSource, train_steps, uniform

BATCH, LR, BASE_EPOCHS = 64, 1e-3, 10
BATCHES = "64,256,test,1024,4096,8192"


def pin_allocator() -> bool:
    """Keep glibc's malloc from trimming the heap or mmap-ing large blocks (no page faults per pass)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 1 << 29))


def run_seed(seed: int, repeats: int, batches: list[str], threads: int, min_seconds: float = 0.5) -> dict | None:
    torch.set_num_threads(1)  # the same trained models whatever --threads is
    bench = load_benchmark("digits-shift", seed)
    factory = lambda: make_generalist(bench.n_features, bench.n_classes, seed)  # noqa: E731
    model = factory()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    data = DataSource(bench.train_dataset(), BATCH)
    train = data.all_indices()
    base = BASE_EPOCHS * (len(train) + len(bench.y_val))
    train_steps(model, optimizer, data, uniform(train), sample_gradients=base, ledger=Ledger(base), seed=seed,
                loss_fn=loss_fn)
    table = score(model, bench.train_dataset(), loss_fn=loss_fn, seed=seed)
    regions = discover_regions(table, x=bench.x_train, seed=seed)
    if not regions.regions:
        return None
    point = ForkPoint(model, optimizer, data, train, table, regions, loss_fn=loss_fn, factory=factory, seed=seed)
    routed = run_menu(point, base // 2, (ROUTE,)).get(ROUTE).model.eval()
    model.eval()
    torch.set_num_threads(threads)
    x = torch.from_numpy(bench.x_test)
    by_batch = {}
    for name in batches:
        size = len(x) if name == "test" else int(name)
        tiled = x.repeat(math.ceil(size / len(x)), 1)[:size]
        cost = inference_cost(routed, model, tiled, repeats=repeats, min_seconds=min_seconds)
        by_batch[name] = {"batch": size, "flops_ratio": cost.flops_ratio, "time_ratio": cost.time_ratio,
                          "single_us": cost.single_seconds_per_sample * size * 1e6,
                          "routed_us": cost.seconds_per_sample * size * 1e6}
    buf = io.BytesIO()
    save_routed(routed, buf)
    again = load_routed(buf.getvalue(), factory)
    exported = torch.export.export(routed, (x,), strict=False).module()
    with torch.no_grad():
        want = routed(x)
        reload_identical = bool(torch.equal(again(x), want))
        export_same = bool(torch.equal(exported(x).argmax(1), want.argmax(1)))
        routed_share = float((routed.route(x) > 0).float().mean())
    return {"seed": seed, "regions": len(regions.regions), "routed_share": routed_share,
            "test_batch": len(x), "by_batch": by_batch, "reload_identical": reload_identical,
            "export_same_predictions": export_same}


def interval(values: list[float]) -> dict[str, float]:
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": half, "n": int(v.size)}


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="201-205")
    parser.add_argument("--repeats", type=int, default=200, help="timed passes per model at least (the fastest "
                        "counts; more until --min-seconds have passed)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="time each batch size at least this long")
    parser.add_argument("--batches", default=BATCHES, help="comma-separated batch sizes; 'test' = the test split")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (0: torch's default, "
                        f"{torch.get_num_threads()} here)")
    parser.add_argument("--allocator", choices=("steady", "default"), default="steady",
                        help="steady: pin glibc malloc's thresholds so no pass page-faults; default: leave it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    batches = [b.strip() for b in args.batches.split(",") if b.strip()]
    threads = args.threads or torch.get_num_threads()
    pinned = pin_allocator() if args.allocator == "steady" else False
    runs = (run_seed(s, args.repeats, batches, threads, args.min_seconds) for s in parse_seeds(args.seeds))
    rows = [r for r in runs if r is not None]
    if not rows:
        print("no seed found a region: nothing to route", file=sys.stderr)
        return 1
    out = {"benchmark": "digits-shift", "seeds": [r["seed"] for r in rows], "torch_threads": threads,
           "allocator_pinned": pinned,
           "routed_share": interval([r["routed_share"] for r in rows]),
           "by_batch": {b: {"batch": rows[0]["by_batch"][b]["batch"],
                            **{k: interval([r["by_batch"][b][k] for r in rows])
                               for k in ("flops_ratio", "time_ratio", "single_us", "routed_us")}} for b in batches},
           "reload_identical": all(r["reload_identical"] for r in rows),
           "export_same_predictions": all(r["export_same_predictions"] for r in rows), "per_seed": rows}
    if args.json:
        print(json.dumps(out))
    else:
        share = out["routed_share"]
        print(f"routed share: {share['mean']:.3f} ± {share['ci95']:.3f} (seeds {out['seeds']}; {threads} torch "
              f"thread(s); allocator {'pinned' if pinned else 'as is'})")
        print(f"{'batch':>6} {'FLOPs ratio':>16} {'time ratio':>16} {'generalist us':>14} {'routed us':>10}")
        for row in out["by_batch"].values():
            print(f"{row['batch']:>6} {row['flops_ratio']['mean']:>8.3f} ± {row['flops_ratio']['ci95']:.3f}"
                  f" {row['time_ratio']['mean']:>8.3f} ± {row['time_ratio']['ci95']:.3f}"
                  f" {row['single_us']['mean']:>14.0f} {row['routed_us']['mean']:>10.0f}")
        print(f"reload identical: {out['reload_identical']}; export same predictions: {out['export_same_predictions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
