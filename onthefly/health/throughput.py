"""Throughput: data-loading vs compute time per step, samples/s and GPU utilisation, from recent steps.

Samples/s is the run's one throughput figure (``onthefly.runtime.throughput``: samples per wall second
over the last 10 s of training), as of the newest step, so the check, the status and the dashboard's
chart agree. Medians, not means: the first step of an epoch also pays for starting the loader's iterator (and
workers), which says nothing about the steady state.
"""

from __future__ import annotations

import statistics

from onthefly.health.findings import Finding, Findings
from onthefly.health.inputs import CheckInput
from onthefly.runtime.throughput import WINDOW_SECONDS

WINDOW = 50
DATA_BOUND = 0.3  # data loading above this share of a step means the model waits for input
MIN_DATA_SECONDS = 0.002  # ignore shares of tiny steps: a 0.5 ms fetch is not a bottleneck
MIN_STEPS = 3  # fewer steps than this are reported but never judged
LOW_GPU_UTIL = 50.0


def check(inp: CheckInput) -> list[Finding]:
    ctx, monitor = inp.ctx, inp.monitor
    out = Findings("throughput")
    steps = monitor.recent_steps()[-WINDOW:] if monitor is not None else []
    if not steps:
        out.info("no steps measured yet: let the run take a few steps, then check again")
        return out.items
    step_s = statistics.median(s.step_seconds for s in steps)
    data_s = statistics.median(s.data_seconds for s in steps)
    sps = steps[-1].samples_per_second
    share = data_s / step_s if step_s > 0 else 0.0
    workers = getattr(ctx.train_loader, "num_workers", None)
    evidence = dict(samples_per_second=sps, median_step_ms=step_s * 1e3, median_data_ms=data_s * 1e3,
                    compute_ms=max(step_s - data_s, 0.0) * 1e3, data_fraction=share, steps=len(steps))
    if workers is not None:
        evidence["num_workers"] = workers
    if share > DATA_BOUND and data_s > MIN_DATA_SECONDS and len(steps) >= MIN_STEPS:
        out.warning(f"loading data takes {share:.0%} of each step ({data_s * 1e3:.1f} of {step_s * 1e3:.1f} ms): "
                    f"the model waits for input; raise num_workers (now {workers}), set pin_memory=True and "
                    "persistent_workers=True, or cache decoded samples", "train_loader", **evidence)
    else:
        out.info(f"{sps:,.0f} samples/s (wall clock, last {WINDOW_SECONDS:.0f} s of training); data loading is {share:.0%} of a {step_s * 1e3:.1f} ms step", "", **evidence)
    if ctx.device.type == "cuda":
        util = monitor.gpu_utilisation() if monitor is not None else []
        if not util:
            out.info("GPU utilisation unknown: install nvidia-ml-py to measure it", "gpu")
        else:
            mean = sum(util) / len(util)
            if mean < LOW_GPU_UTIL:
                out.warning(f"the GPU is busy only {mean:.0f}% of the time: it waits on data loading, the host or "
                            "small kernels; raise the batch size or num_workers", "gpu", gpu_util_percent=mean,
                            samples=len(util))
            else:
                out.info(f"GPU utilisation {mean:.0f}%", "gpu", gpu_util_percent=mean, samples=len(util))
    return out.items
