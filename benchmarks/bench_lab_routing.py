"""What the routed model (fork + route as one nn.Module) costs at inference, against one generalist.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lab_routing.py --seeds 201-205 --json

Per seed of digits-shift: the generalist trains its base budget (10 epochs of sample-gradients, Adam 1e-3,
batch 64), the training set is scored, regions discovered, and the menu's ``fork-route`` resolution is built
at E = 0.5 x base with the product's own code (``resolutions.run_menu``). On the test split, and on the test
split tiled to a large batch, it prints FLOPs per sample (``torch.utils.flop_counter``) and measured time per
sample (fastest of interleaved passes, one thread) relative to the generalist, the share of samples routed
to a specialist, and checks that a weights-only save + reload with the factory and ``torch.export`` give the
same predictions. Ratios, not absolute times: both models run in the same process, alternating.
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

BATCH, LR, BASE_EPOCHS, LARGE = 64, 1e-3, 10, 8192


def run_seed(seed: int, repeats: int) -> dict | None:
    torch.set_num_threads(1)
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
    x = torch.from_numpy(bench.x_test)
    big = x.repeat(math.ceil(LARGE / len(x)), 1)[:LARGE]
    small = inference_cost(routed, model, x, repeats=repeats)
    large = inference_cost(routed, model, big, repeats=repeats)
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
            "test_batch": len(x), "flops_ratio": small.flops_ratio, "time_ratio": small.time_ratio,
            "large_batch": LARGE, "large_flops_ratio": large.flops_ratio, "large_time_ratio": large.time_ratio,
            "reload_identical": reload_identical, "export_same_predictions": export_same}


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
    parser.add_argument("--repeats", type=int, default=30, help="timed passes per model (the fastest counts)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [r for r in (run_seed(s, args.repeats) for s in parse_seeds(args.seeds)) if r is not None]
    if not rows:
        print("no seed found a region: nothing to route", file=sys.stderr)
        return 1
    keys = ("routed_share", "flops_ratio", "time_ratio", "large_flops_ratio", "large_time_ratio")
    out = {"benchmark": "digits-shift", "seeds": [r["seed"] for r in rows],
           **{k: interval([r[k] for r in rows]) for k in keys},
           "reload_identical": all(r["reload_identical"] for r in rows),
           "export_same_predictions": all(r["export_same_predictions"] for r in rows), "per_seed": rows}
    if args.json:
        print(json.dumps(out))
    else:
        for k in keys:
            print(f"{k:>18}: {out[k]['mean']:.3f} ± {out[k]['ci95']:.3f}")
        print(f"reload identical: {out['reload_identical']}; export same predictions: {out['export_same_predictions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
