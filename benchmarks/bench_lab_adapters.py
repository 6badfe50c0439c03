"""How the adapter merge's two free settings (replay fraction, learning-rate scale) fare, on VALIDATION data.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lab_adapters.py --benchmarks digits-shift,mixture,imbalanced \\
        --seeds 201-205 --configs 0.5:10,0.6:20,0.7:20

Per benchmark and seed: the generalist trains its base budget (10 epochs of the train split, Adam 1e-3,
batch 64), regions are discovered on its scores, then (a) "continue" and each adapter configuration
(``replay_fraction:lr_scale``, the learning rate being lr_scale x the generalist's) spend the same
E = 0.5 x base. Printed: each configuration's overall and worst-group accuracy on the validation split
minus continue's, mean over seeds (points). The defaults in ``onthefly/lab/merges/adapters.py`` were
chosen from this table; the test split is never read here.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn as nn

from onthefly.demos.lab_benchmarks import load_benchmark, make_generalist
from onthefly.lab.budget import Ledger
from onthefly.lab.merges.adapters import adapter_merge
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import score
from onthefly.lab.train_steps import DataSource, clone_model, clone_optimizer, train_steps, uniform

BATCH, LR, BASE_EPOCHS = 64, 1e-3, 10


def run_seed(name: str, seed: int, configs: list[tuple[float, float]]) -> list[np.ndarray] | None:
    torch.set_num_threads(1)
    bench = load_benchmark(name, seed)
    model = make_generalist(bench.n_features, bench.n_classes, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    data = DataSource(bench.train_dataset(), BATCH)
    train = data.all_indices()
    base = BASE_EPOCHS * len(train)
    extra = base // 2
    train_steps(model, optimizer, data, uniform(train), sample_gradients=base, ledger=Ledger(), seed=seed,
                loss_fn=loss_fn)
    regions = discover_regions(score(model, bench.train_dataset(), seed=seed), x=bench.x_train, seed=seed)
    if not regions.regions:
        return None
    x_val = torch.from_numpy(bench.x_val)

    def accuracy(m: nn.Module) -> np.ndarray:
        m.eval()
        with torch.no_grad():
            correct = m(x_val).argmax(1).numpy() == bench.y_val
        worst = min(correct[bench.g_val == g].mean() for g in np.unique(bench.g_val))
        return 100 * np.array([correct.mean(), worst])

    cont = clone_model(model)
    train_steps(cont, clone_optimizer(optimizer, model, cont), data, uniform(train), sample_gradients=extra,
                ledger=Ledger(), seed=seed, loss_fn=loss_fn)
    reference = accuracy(cont)
    out = []
    for replay_fraction, scale in configs:
        result = adapter_merge(model, [r.indices for r in regions.regions], optimizer=optimizer, data=data,
                               train_indices=train, ledger=Ledger(extra), seed=seed, loss_fn=loss_fn,
                               replay_fraction=replay_fraction, lr=LR * scale)
        out.append(accuracy(result.model) - reference)
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default="digits-shift,mixture,imbalanced")
    parser.add_argument("--seeds", default="201-205")
    parser.add_argument("--configs", default="0.5:10,0.6:20,0.7:20", help="replay_fraction:lr_scale, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    configs = [tuple(float(v) for v in c.split(":")) for c in args.configs.split(",")]
    for name in args.benchmarks.split(","):
        rows = [r for r in (run_seed(name, s, configs) for s in parse_seeds(args.seeds)) if r is not None]
        table = {f"replay={c[0]} lr_scale={c[1]:g}": {
            "overall_minus_continue": float(np.mean([r[i][0] for r in rows])) if rows else float("nan"),
            "worst_group_minus_continue": float(np.mean([r[i][1] for r in rows])) if rows else float("nan")}
            for i, c in enumerate(configs)}
        if args.json:
            print(json.dumps({"benchmark": name, "split": "val", "seeds_with_regions": len(rows), "configs": table}))
        else:
            print(f"{name} (validation, {len(rows)} seeds with a region; points vs continue)")
            for label, v in table.items():
                print(f"  {label:>24}: overall {v['overall_minus_continue']:+.1f}  "
                      f"worst group {v['worst_group_minus_continue']:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
