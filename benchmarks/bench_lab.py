"""The lab's figures on PROTOCOL.md's benchmarks, with the product's own code: discovery and noise
verdicts (this file), and the matched-compute resolutions (``benchmarks/lab_resolutions.py``, merged in
when present).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lab.py --benchmarks digits-shift,digits-noise \
        --seeds 200-214 --json [--no-resolutions]

Per benchmark and seed: the protocol's generalist (``lab_benchmarks.train_generalist``: 10 epochs, Adam
1e-3, batch 64) is scored on its train split (``lab.scoring.score``), regions are discovered
(``lab.regions.discover_regions`` with its defaults: k=8, ratio 1.5, at most 4) and each gets a noise
verdict (``lab.noise.region_verdicts``). Against the benchmark's ground truth:

- purity / recall of the discovered regions (their union, and r1 alone) for the hard slice; the slice
  counts as found when the union is >= 95% pure with >= 90% recall (the issue's bar);
- the noise verdicts: seeds where a region is flagged as label noise, and where the hard slice's region
  (the region holding most of the slice) is flagged; for the noise control, how many flagged samples
  were truly flipped.

With ``--json`` one JSON object per benchmark per line; otherwise a readable table. Means carry a 95%
confidence interval (t over seeds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from onthefly.demos.lab_benchmarks import BENCHMARKS, load_benchmark, train_generalist
from onthefly.lab.noise import find_issues, region_verdicts
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import score

PURITY_BAR, RECALL_BAR = 0.95, 0.90


def discovery_seed(name: str, seed: int) -> dict[str, Any]:
    """Discovery and noise figures of one seed of one benchmark."""
    started = time.perf_counter()
    bench = load_benchmark(name, seed)
    model, _ = train_generalist(bench, seed)
    table = score(model, bench.train_dataset(), seed=seed)
    scored = time.perf_counter()
    regions = discover_regions(table, bench.x_train, seed=seed)
    discovered = time.perf_counter()
    issues = find_issues(table, bench.x_train, seed=seed)
    verdicts = region_verdicts(table, regions, bench.x_train, issues=issues)
    checked = time.perf_counter()
    hard = bench.hard_mask("train")
    union = np.zeros(len(table), bool)
    for region in regions.regions:
        union[region.positions] = True
    r1 = np.zeros(len(table), bool)
    if regions.regions:
        r1[regions.regions[0].positions] = True
    # the region that holds most of the hard slice (None when no region touches it)
    holding = [int(hard[r.positions].sum()) for r in regions.regions]
    slice_region = regions.regions[int(np.argmax(holding))].id if holding and max(holding) > 0 else None
    flagged = [v.region_id for v in verdicts if v.noisy]
    union_purity, union_recall = _purity(hard, union), _recall(hard, union)
    return {
        "seed": seed,
        "train_accuracy": table.accuracy,
        "regions": [{"id": r.id, "size": r.size, "loss_ratio": round(r.loss_ratio, 3),
                     "hard_fraction": round(float(hard[r.positions].mean()), 3),
                     "noise_fraction": round(v.noise_fraction, 3), "verdict": v.verdict}
                    for r, v in zip(regions.regions, verdicts)],
        "union_purity": union_purity, "union_recall": union_recall,
        "r1_purity": _purity(hard, r1), "r1_recall": _recall(hard, r1),
        "found": bool(union.any() and union_purity >= PURITY_BAR and union_recall >= RECALL_BAR),
        "noise_flagged": bool(flagged), "flagged_regions": flagged,
        "slice_region": slice_region, "slice_region_flagged": slice_region in flagged,
        "issue_precision": _purity(bench.noisy_train, issues.issues) if bench.noisy_train.any() else None,
        "issue_recall": _recall(bench.noisy_train, issues.issues) if bench.noisy_train.any() else None,
        "seconds": {"train_and_score": scored - started, "discover": discovered - scored,
                    "noise": checked - discovered},
    }


def _purity(truth: np.ndarray, chosen: np.ndarray) -> float:
    return float(truth[chosen].mean()) if chosen.any() else 0.0


def _recall(truth: np.ndarray, chosen: np.ndarray) -> float:
    return float(chosen[truth].mean()) if truth.any() else float("nan")


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% confidence half-width (t over seeds; 0 for one seed)."""
    from scipy import stats

    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(data) == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = float(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data))) if len(data) > 1 else 0.0
    return {"mean": float(data.mean()), "ci95": half, "n": int(len(data))}


def proportion(count: int, n: int) -> dict[str, float]:
    """A count of seeds as a rate with its exact (Clopper-Pearson) 95% interval."""
    from scipy import stats

    low, high = stats.binomtest(count, n).proportion_ci(0.95, method="exact") if n else (float("nan"),) * 2
    return {"count": int(count), "n": int(n), "rate": count / n if n else float("nan"), "low": float(low),
            "high": float(high)}


def summarize_discovery(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(seeds)
    return {
        "seeds_found": sum(s["found"] for s in seeds), "seeds": n,
        "found_rate": proportion(sum(s["found"] for s in seeds), n),
        "noise_flagged_rate": proportion(sum(s["noise_flagged"] for s in seeds), n),
        "bar": f"union of regions >= {PURITY_BAR:.0%} pure and >= {RECALL_BAR:.0%} recall of the hard slice",
        "union_purity": interval([s["union_purity"] for s in seeds]),
        "union_recall": interval([s["union_recall"] for s in seeds]),
        "r1_purity": interval([s["r1_purity"] for s in seeds]),
        "r1_recall": interval([s["r1_recall"] for s in seeds]),
        "regions_per_seed": interval([len(s["regions"]) for s in seeds]),
        "seeds_with_regions": sum(bool(s["regions"]) for s in seeds),
        "seeds_noise_flagged": sum(s["noise_flagged"] for s in seeds),
        "seeds_slice_region_flagged": sum(s["slice_region_flagged"] for s in seeds),
        "issue_precision": interval([s["issue_precision"] for s in seeds]),
        "issue_recall": interval([s["issue_recall"] for s in seeds]),
        "train_accuracy": interval([s["train_accuracy"] for s in seeds]),
    }


def run(name: str, seeds: Sequence[int], resolutions: bool) -> dict[str, Any]:
    per_seed = [discovery_seed(name, seed) for seed in seeds]
    out: dict[str, Any] = {"benchmark": name, "seeds": list(seeds), "discovery": summarize_discovery(per_seed),
                           "discovery_per_seed": per_seed}
    if resolutions:
        module = _resolutions_module()
        if module is None:
            out["resolutions"] = "not run: benchmarks/lab_resolutions.py is not in this build"
        else:
            extra = module.run_benchmark(name, list(seeds))
            # Same object; lab_resolutions' own discovery summary (from its run of the menu) keeps its name.
            for key, value in extra.items():
                out["resolutions_discovery" if key == "discovery" else key] = value
            out["_resolutions_render"] = lambda: module.render(extra)
    return out


def _resolutions_module() -> Any:
    """lab-fork's matched-compute protocol, when present beside this file."""
    path = Path(__file__).with_name("lab_resolutions.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("lab_resolutions", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("lab_resolutions", module)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            low, high = part.split("-", 1)
            seeds.extend(range(int(low), int(high) + 1))
        elif part.strip():
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}; write e.g. 200-214 or 200,203")
    return seeds


def parse_benchmarks(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark {unknown[0] if unknown else text!r}; "
                                         f"choose from {', '.join(BENCHMARKS)}")
    return names


def render(result: dict[str, Any]) -> str:
    d = result["discovery"]
    ci = lambda s: f"{s['mean']:.3f} ± {s['ci95']:.3f}"  # noqa: E731
    lines = [f"== {result['benchmark']} (seeds {result['seeds'][0]}-{result['seeds'][-1]})",
             f"  slice found ({d['bar']}): {d['seeds_found']}/{d['seeds']} seeds "
             f"(95% CI {d['found_rate']['low']:.2f}-{d['found_rate']['high']:.2f})",
             f"  union purity {ci(d['union_purity'])}, recall {ci(d['union_recall'])}; "
             f"r1 purity {ci(d['r1_purity'])}, recall {ci(d['r1_recall'])}",
             f"  regions per seed {ci(d['regions_per_seed'])} (some region in {d['seeds_with_regions']}/{d['seeds']})",
             f"  noise: a region flagged in {d['seeds_noise_flagged']}/{d['seeds']} seeds (95% CI "
             f"{d['noise_flagged_rate']['low']:.2f}-{d['noise_flagged_rate']['high']:.2f}); the slice's region "
             f"flagged in {d['seeds_slice_region_flagged']}/{d['seeds']}"]
    if d["issue_precision"]["n"]:
        lines.append(f"  label issues: precision {ci(d['issue_precision'])}, recall {ci(d['issue_recall'])}")
    for s in result["discovery_per_seed"]:
        regions = " ".join(f"{r['id']}({r['size']}, {r['loss_ratio']:.2f}x, hard {r['hard_fraction']:.2f}, "
                           f"{'NOISE' if r['verdict'] != 'regime' else 'regime'})" for r in s["regions"])
        lines.append(f"    seed {s['seed']}: acc {s['train_accuracy']:.3f} {regions or 'no region'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=parse_benchmarks, default=list(BENCHMARKS),
                        help=f"comma-separated, from {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(range(200, 215)), help="e.g. 200-214 (default)")
    parser.add_argument("--json", action="store_true", help="one JSON object per benchmark per line")
    parser.add_argument("--no-resolutions", action="store_true",
                        help="discovery and noise figures only (skip lab_resolutions' matched-compute menu)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models on a shared CPU: intra-op threads only contend
    for name in args.benchmarks:
        result = run(name, args.seeds, resolutions=not args.no_resolutions)
        render_resolutions = result.pop("_resolutions_render", None)
        if args.json:
            print(json.dumps(result, default=float), flush=True)
        else:
            print(render(result), flush=True)
            if render_resolutions is not None:
                print(render_resolutions(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
