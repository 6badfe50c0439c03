"""The matched-compute protocol of PROTOCOL.md, run with the product's own code, per benchmark and seed.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/lab_resolutions.py --benchmarks digits-shift --seeds 200-214 --json

Per seed: the generalist (MLP d->32->32->C, Adam 1e-3, batch 64) trains for the base budget (10 epochs
of the train split, ``lab_benchmarks.train_generalist``); at the fork the training set is scored, regions discovered
and checked for label noise; every resolution of the menu is built at E = 0.5 x the base budget
(asserted to the sample-gradient); every resolution is compared on the validation split (carved from
train, never trained on), one is recommended there, and all are scored on the test split: overall
accuracy and worst-group accuracy over the benchmark's ground-truth groups.

Per benchmark, per resolution: overall and worst-group accuracy (mean and 95% CI, t over seeds), compute
spent, inference cost (FLOPs and measured time per sample relative to one generalist), and the
recommended resolution; plus paired differences (fork + route against (a) and (b); the recommendation
against the best of (a)/(b)/(b') of each seed). ``bench_lab.py`` merges ``run_benchmark``'s dict into its
JSON object per benchmark.

The recommendation rule was tuned on seeds 100-119 only (``--dump`` then ``--rerecommend``), never on the
reported ones. Mean ± 95% t-CI over seeds, accuracy points; "recommended" = the recommended resolution's test worst
group minus the seed's best of (a)/(b)/(b') / its test overall accuracy minus (a)'s; --jobs 2 on a 2-core shared VM.

Fresh seeds 300-314 (run once, rule frozen at b4d44fe; ``--seeds 300-314 --jobs 2 --json``):
- digits-shift: fork + route - (a) worst group +22.7 ± 3.4, - (b) +14.9 ± 3.4, - (b') +1.5 ± 1.4, overall
  -0.1 ± 0.8, 1.35x FLOPs. Recommended +0.9 ± 4.1 / +0.5 ± 1.0 (10/15 seeds within both targets).
- mixture: recommended -1.3 ± 2.3 / +0.0 ± 0.4 (9/15).
- imbalanced: recommended -9.9 ± 5.3 / -0.1 ± 0.9 (2/15); balance-classes chosen in 11/15 seeds, itself
  -9.9 ± 4.9 / -0.7 ± 0.7. The worst-group target is not met: it conflicts with the overall one here (below).
- digits-noise: recommended -1.0 ± 1.1 (0.0 ± 0.0 against the best it may pick: (b) blocked as noise) / 0.0;
  continue in 15/15 seeds (12/15 within both).

Seeds 200-214, measured once at 18dd5e6 (paired test at one standard error, no label-noise rule): digits-shift
-0.5 ± 3.3 / +0.6 ± 0.8; mixture -0.5 ± 3.5 / -0.1 ± 0.5; imbalanced -11.6 ± 6.1 / -0.7 ± 1.0 (was -17.5 ± 5.9 /
+0.4 before balance-classes); digits-noise -4.4 ± 4.7 / -0.1 ± 0.3, unchanged: seed 204's adapters cleared one
standard error (+5.3 validation points at 1.6 SE; -21 on test) because they fit the noise the validation labels
share. The label-noise rule (two standard errors where the fork flagged noise) was written after seeing that seed,
so its figures there are not held out: digits-noise -3.0 ± 4.0 (-1.1 ± 1.5 against the best allowed) / 0.0,
imbalanced -12.2 ± 5.9 / -0.6 ± 1.0, digits-shift and mixture unchanged (``--rerecommend`` of that dump).

imbalanced's two targets conflict at matched compute: (b) is the best single model on the worst group and costs
7-8 points overall; square-root class balancing keeps overall within a point and closes about half the gap;
``lab_imbalanced_frontier.py`` traces the rest (no sampling power or logit adjustment is within 2 worst-group
points of the best of (a)/(b) while within 1 point overall).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.demos.lab_benchmarks import BENCHMARKS, load_benchmark, train_generalist
from onthefly.lab.budget import Ledger
from onthefly.lab.compare import compare, evaluation_slices
from onthefly.lab.recommend import recommend
from onthefly.lab.regions import discover_regions
from onthefly.lab.resolutions import BALANCE, CONTINUE, HARD, MENU, REGION, ROUTE, ForkPoint, run_menu
from onthefly.lab.scoring import embed, score
from onthefly.lab.train_steps import DataSource

BATCH, LR, BASE_EPOCHS, EXTRA_FRACTION = 64, 1e-3, 10, 0.5


def noisy_regions(table: Any, regions: Any, x: np.ndarray, seed: int) -> tuple[frozenset[str], str]:
    """Region ids flagged as likely label noise by lab-discover's verdict, and which test gave it."""
    try:
        from onthefly.lab import noise
    except ImportError:
        return frozenset(), "unavailable (onthefly.lab.noise is not in this build)"
    verdicts = noise.region_verdicts(table, regions, x=x, seed=seed)
    return frozenset(v.region_id for v in verdicts if v.noisy), "onthefly.lab.noise.region_verdicts"


def run_seed(name: str, seed: int, names: Sequence[str] = MENU, timing: bool = True) -> dict[str, Any]:
    """One seed of one benchmark: every resolution's val/test scores and the recommendation."""
    # Tiny models on a shared CPU: torch's intra-op threads only contend (a 64-wide step took 70 ms with 2
    # threads on a busy 2-core machine, 1 ms with one).
    torch.set_num_threads(1)
    bench = load_benchmark(name, seed)
    # The protocol's generalist and base budget (10 epochs of the train split, Adam 1e-3, batch 64), trained by
    # the benchmark module's own loop so that discovery figures and these figures describe the same model.
    model, optimizer = train_generalist(bench, seed, epochs=BASE_EPOCHS, batch_size=BATCH, lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    train_set = bench.train_dataset()
    data = DataSource(train_set, BATCH)
    train = data.all_indices()
    base = BASE_EPOCHS * len(train)
    extra = int(EXTRA_FRACTION * base)
    forward_ledger = Ledger(None, "fork-point analysis")
    table = score(model, train_set, loss_fn=loss_fn, seed=seed, step=base // BATCH)
    forward_ledger.count_forward(len(table), "scoring")
    regions = discover_regions(table, x=bench.x_train, seed=seed)
    noisy, noise_test = noisy_regions(table, regions, bench.x_train, seed)
    point = ForkPoint(model, optimizer, data, train, table, regions, loss_fn=loss_fn, step=base // BATCH,
                      seed=seed, noisy_regions=noisy)
    started = time.perf_counter()
    menu = run_menu(point, extra, names)
    menu_seconds = time.perf_counter() - started
    acted = [r.id for r in point.acted_regions()]

    val_slices = evaluation_slices(regions, bench.x_val, embedding=embed(model, bench.x_val), y=bench.y_val,
                                   n_classes=bench.n_classes, region_ids=acted)
    on_val = compare(menu.resolutions, bench.x_val, bench.y_val, val_slices, reference=model, split="val",
                     cost=True, cost_repeats=3)
    chosen = recommend(on_val, blocked=menu.blocked, label_noise=bool(menu.noisy_regions))

    groups = {bench.group_names[g]: bench.g_test == g for g in range(len(bench.group_names))}
    test_slices = evaluation_slices(regions, bench.x_test, embedding=embed(model, bench.x_test), y=bench.y_test,
                                    n_classes=bench.n_classes, region_ids=acted, groups=groups)
    on_test = compare(menu.resolutions, bench.x_test, bench.y_test, test_slices, reference=model, split="test",
                      worst_kinds=("group",), min_size=1, cost=timing, cost_repeats=20)
    hard = bench.hard_mask("train")
    found = np.zeros(len(train), dtype=bool)
    for r in regions.regions:
        found[table.positions(r.indices)] = True
    return {
        "seed": seed, "extra": extra, "base": base, "menu_seconds": menu_seconds,
        "regions": [{"id": r.id, "size": r.size, "noisy": r.id in noisy} for r in regions.regions],
        "discovery": {"purity": float(hard[found].mean()) if found.any() else float("nan"),
                      "recall": float(found[hard].mean()) if hard.any() else float("nan")},
        "noise_test": noise_test, "skipped": menu.skipped, "blocked": menu.blocked,
        "recommended": chosen.name, "reason": chosen.reason, "validation": on_val.as_dict(),
        # per-sample results and slice masks of the validation split, so --rerecommend can redo the paired test
        "validation_samples": {"correct": {k: _bits(v) for k, v in on_val.correct.items()},
                               "masks": {x.name: _bits(x.mask) for x in val_slices}},
        "test_table": on_test.as_dict(),
        "resolutions": {row.name: {"overall": row.overall, "worst_group": row.worst_accuracy,
                                   "worst_group_name": row.worst_slice,
                                   "val_overall": on_val.row(row.name).overall,
                                   "val_worst_slice": on_val.row(row.name).worst_accuracy,
                                   "sample_gradients": row.sample_gradients, "forward_samples": row.forward_samples,
                                   "flops_ratio": on_val.row(row.name).flops_ratio, "time_ratio": row.time_ratio}
                        for row in on_test.rows},
    }


def _bits(values: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(values, dtype=bool))


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and the half-width of its 95% t-interval over seeds."""
    from scipy import stats

    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": half, "n": int(v.size)}


def summarize(name: str, seeds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means and 95% CIs over seeds; a resolution skipped in some seeds (no region found) counts the seeds
    it ran in (``n``), and paired differences use the seeds where both sides ran."""
    names = [n for n in MENU if any(n in s["resolutions"] for s in seeds)]
    out: dict[str, Any] = {"benchmark": name, "seeds": [s["seed"] for s in seeds], "extra_sample_gradients":
                           sorted({s["extra"] for s in seeds}), "resolutions": {}}
    for n in names:
        rows = [s["resolutions"][n] for s in seeds if n in s["resolutions"]]
        spent = sorted({r["sample_gradients"] for r in rows})
        out["resolutions"][n] = {
            "seeds_run": len(rows),
            "overall": interval([100 * r["overall"] for r in rows]),
            "worst_group": interval([100 * r["worst_group"] for r in rows]),
            "sample_gradients": spent, "matched_compute": spent == out["extra_sample_gradients"],
            "flops_ratio": interval([r["flops_ratio"] for r in rows]),
            "time_ratio": interval([r["time_ratio"] for r in rows]),
            "recommended_in": sum(s["recommended"] == n for s in seeds),
        }
    paired: dict[str, Any] = {}

    def diff(a: str, b: str, key: str) -> dict[str, float]:
        return interval([100 * (s["resolutions"][a][key] - s["resolutions"][b][key]) for s in seeds
                         if a in s["resolutions"] and b in s["resolutions"]])

    if ROUTE in names:
        paired["route_minus_a_worst"] = diff(ROUTE, CONTINUE, "worst_group")
        paired["route_minus_b_worst"] = diff(ROUTE, HARD, "worst_group")
        paired["route_minus_a_overall"] = diff(ROUTE, CONTINUE, "overall")
        paired["route_minus_bprime_worst"] = diff(ROUTE, REGION, "worst_group")
    if BALANCE in names:  # where sqrt class balancing sits between the two targets (imbalanced)
        paired["balance_minus_a_overall"] = diff(BALANCE, CONTINUE, "overall")
        paired["balance_minus_best_single_worst"] = interval([
            100 * (s["resolutions"][BALANCE]["worst_group"]
                   - max(s["resolutions"][n]["worst_group"] for n in (CONTINUE, HARD, REGION) if n in s["resolutions"]))
            for s in seeds if BALANCE in s["resolutions"]])
    rec_worst, rec_allowed, rec_overall, within = [], [], [], 0
    for s in seeds:
        res = s["resolutions"]
        rec = res[s["recommended"]]
        # The best single model of the seed; (b') counts only where a region was found to build it on.
        best = max(res[n]["worst_group"] for n in (CONTINUE, HARD, REGION) if n in res)
        rec_worst.append(100 * (rec["worst_group"] - best))
        # The same, among the single models the recommendation may pick: (b) blocked (its hard set lies in
        # regions flagged as label noise) is never recommended, so it is not a target there.
        allowed = max(res[n]["worst_group"] for n in (CONTINUE, HARD, REGION) if n in res and n not in s["blocked"])
        rec_allowed.append(100 * (rec["worst_group"] - allowed))
        rec_overall.append(100 * (rec["overall"] - res[CONTINUE]["overall"]))
        within += (rec_worst[-1] >= -2.0) and (rec_overall[-1] >= -1.0)
    paired["recommended_minus_best_single_worst"] = interval(rec_worst)
    paired["recommended_minus_best_allowed_single_worst"] = interval(rec_allowed)
    paired["recommended_minus_a_overall"] = interval(rec_overall)
    paired["seeds_recommended_within_targets"] = within
    out["paired"] = paired
    out["recommended"] = max(names, key=lambda n: out["resolutions"][n]["recommended_in"])
    out["discovery"] = {"purity": interval([100 * s["discovery"]["purity"] for s in seeds]),
                        "recall": interval([100 * s["discovery"]["recall"] for s in seeds]),
                        "seeds_with_regions": sum(bool(s["regions"]) for s in seeds)}
    out["noise_test"] = seeds[0]["noise_test"]
    out["skipped"] = {f"{s['seed']}:{k}": v for s in seeds for k, v in s["skipped"].items()}
    out["per_seed"] = [{"seed": s["seed"], "recommended": s["recommended"], "reason": s["reason"],
                        "regions": s["regions"], "blocked": s["blocked"]} for s in seeds]
    return out


def run_benchmark(name: str, seeds: Sequence[int], names: Sequence[str] = MENU, timing: bool = True,
                  jobs: int = 1, keep: list | None = None) -> dict[str, Any]:
    """The per-benchmark dict ``bench_lab.py`` merges into its JSON object."""
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            results = list(pool.map(run_seed, [name] * len(seeds), seeds, [tuple(names)] * len(seeds),
                                    [timing] * len(seeds)))
    else:
        results = [run_seed(name, s, names, timing) for s in seeds]
    if keep is not None:
        keep.extend({"benchmark": name, **r} for r in results)
    return summarize(name, results)


def validation_table(seed: dict[str, Any], exclude: Sequence[str] = ()) -> Any:
    """A dumped seed's validation Comparison, with its per-sample results, without the ``exclude`` rows."""
    from onthefly.lab.compare import Comparison, Row, Slice

    v, samples = seed["validation"], seed["validation_samples"]
    slices = [Slice(x["name"], x["kind"], _unbits(samples["masks"][x["name"]])) for x in v["slices"]]
    rows = [Row(**r) for r in v["rows"] if r["name"] not in exclude]
    return Comparison(v["split"], slices, rows, tuple(v["worst_kinds"]),
                      correct={k: _unbits(b) for k, b in samples["correct"].items()})


def _unbits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")


def rerecommend(dumped: Sequence[dict[str, Any]], exclude: Sequence[str] = (),
                **rule: Any) -> dict[str, list[dict[str, Any]]]:
    """Per benchmark, the dumped seeds (``--dump``) with the recommendation made again by this build's
    ``recommend`` (with ``rule``'s keyword arguments) on each seed's validation table, the ``exclude``
    resolutions left out as if never built: how a change to the rule or the menu was tuned on development
    seeds without retraining anything."""
    out: dict[str, list[dict[str, Any]]] = {}
    for seed in dumped:
        table = validation_table(seed, exclude)
        options = {"label_noise": any(r["noisy"] for r in seed["regions"]), **rule}
        chosen = recommend(table, blocked=seed["blocked"], **options)
        kept = {k: v for k, v in seed["resolutions"].items() if k not in exclude}
        out.setdefault(seed["benchmark"], []).append({**seed, "resolutions": kept, "recommended": chosen.name,
                                                      "reason": chosen.reason})
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds += list(range(int(a), int(b) + 1))
        else:
            seeds.append(int(part))
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--seeds", default="200-214")
    parser.add_argument("--resolutions", default=",".join(MENU))
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes")
    parser.add_argument("--no-timing", action="store_true", help="skip measured inference time on test")
    parser.add_argument("--json", action="store_true", help="one JSON object per benchmark, one per line")
    parser.add_argument("--dump", help="also write every seed's full tables (validation and test) to this file")
    parser.add_argument("--rerecommend", metavar="DUMP", help="train nothing: recommend again on the validation "
                        "tables of a --dump file with this build's rule, and summarize")
    parser.add_argument("--exclude", default="", help="with --rerecommend: leave these resolutions out (comma "
                        "separated), as if the menu had not built them")
    args = parser.parse_args(argv)
    if args.rerecommend:
        with open(args.rerecommend) as f:
            dumped = [s for s in json.load(f) if s["benchmark"] in args.benchmarks.split(",")]
            for name, seeds in rerecommend(dumped, [x for x in args.exclude.split(",") if x]).items():
                result = summarize(name, seeds)
                print(json.dumps(result) if args.json else render(result), flush=True)
        return 0
    dumped = []
    for name in args.benchmarks.split(","):
        result = run_benchmark(name, parse_seeds(args.seeds), args.resolutions.split(","), not args.no_timing,
                               args.jobs, keep=dumped)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(render(result), flush=True)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(dumped, f)
    return 0


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['benchmark']}  seeds {result['seeds'][0]}-{result['seeds'][-1]}  "
             f"E = {result['extra_sample_gradients']} sample-gradients"]
    lines.append(f"  {'resolution':16} {'overall':>14} {'worst group':>14} {'FLOPs':>6} {'time':>6} {'rec':>4}")
    for n, r in result["resolutions"].items():
        o, w = r["overall"], r["worst_group"]
        lines.append(f"  {n:16} {o['mean']:6.1f} ± {o['ci95']:4.1f}   {w['mean']:6.1f} ± {w['ci95']:4.1f}  "
                     f"{r['flops_ratio']['mean']:5.2f}x {r['time_ratio']['mean']:5.2f}x {r['recommended_in']:4d}"
                     f"  ({r['seeds_run']} seeds)")
    for k, v in result["paired"].items():
        lines.append(f"  {k}: " + (f"{v['mean']:+.1f} ± {v['ci95']:.1f}" if isinstance(v, dict) else f"{v}"))
    d = result["discovery"]
    lines.append(f"  discovery: purity {d['purity']['mean']:.1f}, recall {d['recall']['mean']:.1f}, regions found "
                 f"in {d['seeds_with_regions']}/{len(result['seeds'])} seeds; noise test: {result['noise_test']}")
    if result["skipped"]:
        lines.append(f"  skipped: {len(result['skipped'])} (seed:resolution) e.g. {next(iter(result['skipped'].items()))}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
