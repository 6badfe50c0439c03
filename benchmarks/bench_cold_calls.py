"""What one call costs right after a training step's backward, against the same call repeated at once.

    .venv/bin/python benchmarks/bench_cold_calls.py [--small]

On a CPU run the step's own tensors (weights, grads, activations: a few MB on the reference MLP 784-256-10,
batch 128) pass through the core's caches every step, so the first Python line or torch op after backward
runs cold. This plain loop (no OnTheFly) times a few typical calls both ways; the cold figures are what any
bookkeeping in a training step really costs, and why OnTheFly keeps the number of calls in its step small.
``--small`` uses a model 8 -> 2 (batch 4), whose step leaves the caches warm.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def empty() -> None:
    pass


def batch_len(batch) -> int:
    for value in batch:
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.small:
        model, batch, features, classes = nn.Linear(8, 2), 4, 8, 2
    else:
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        batch, features, classes = 128, 784, 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    xs = [torch.randn(batch, features) for _ in range(50)]
    ys = [torch.randint(0, classes, (batch,)) for _ in range(50)]
    params = list(model.parameters())
    calls = {
        "an empty Python function": lambda ctx: empty(),
        "batch_len((x, y)) (pure Python)": lambda ctx: batch_len(ctx[0]),
        "loss.item()": lambda ctx: ctx[1].item(),
        "nll_loss(reduction='none')": lambda ctx: F.nll_loss(ctx[2], ctx[0][1], reduction="none"),
        "torch._foreach_norm(grads)": lambda ctx: torch._foreach_norm([p.grad for p in params]),
    }
    names = list(calls)
    cold = {name: [] for name in names}
    warm = {name: [] for name in names}
    for i in range(args.steps):
        x, y = xs[i % 50], ys[i % 50]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        log_probs = loss.grad_fn._saved_self.detach()
        loss.backward()
        name = names[i % len(names)]  # one call per step, so each measured call is the first after backward
        ctx = ((x, y), loss, log_probs)
        for into in (cold, warm):
            start = time.perf_counter_ns()
            calls[name](ctx)
            into[name].append(time.perf_counter_ns() - start)
        opt.step()
    print(f"torch {torch.__version__}, 1 thread, {'small' if args.small else 'reference'} model; "
          f"median of {args.steps // len(names)} steps each")
    for name in names:
        c, w = statistics.median(cold[name][10:]) / 1e3, statistics.median(warm[name][10:]) / 1e3
        print(f"  {name:<34} first after backward {c:7.1f} us; repeated at once {w:7.1f} us ({c / w:4.1f}x)")


if __name__ == "__main__":
    main()
