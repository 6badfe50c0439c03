"""Min/max downsampling and the metric-history query over a 10^6-step history: every spike survives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onthefly.runtime.errors import InvalidArgument
from onthefly.sessions.downsample import min_max
from onthefly.sessions.history import History
from onthefly.sessions.metric_query import query_metrics


def _curve(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1, dtype=np.int64)
    return steps, 2.0 * np.exp(-steps / (n / 5)) + 0.01 * rng.random(n)


def test_every_spike_and_dip_survives_in_step_order():
    steps, values = _curve(100_000)
    spikes = {777: 50.0, 31_415: 9.0, 99_999: 7.0}
    dips = {5_000: -3.0, 60_001: -1.0}
    for step, v in {**spikes, **dips}.items():
        values[step - 1] = v
    xs, ys = min_max(steps, values, 500)
    assert len(xs) <= 1002 and np.all(np.diff(xs) > 0)
    got = dict(zip(xs.tolist(), ys.tolist()))
    assert all(got.get(step) == v for step, v in {**spikes, **dips}.items())
    assert (xs[0], xs[-1]) == (1, 100_000)  # first and last points kept


def test_short_series_and_non_finite_values():
    steps = np.arange(10, dtype=np.int64)
    values = np.array([1, np.nan, 3, np.inf, 5, 6, 7, 8, 9, 10], dtype=np.float64)
    xs, ys = min_max(steps, values, 100)
    assert xs.tolist() == [0, 2, 4, 5, 6, 7, 8, 9] and np.isfinite(ys).all()
    with pytest.raises(ValueError):
        min_max(steps, values, 0)


def _history(n: int) -> History:
    steps, loss = _curve(n)
    if n > 123_456:
        loss[123_456] = 1e3  # one step of one million blows up
    history = History(None, "s")
    history.load_metric_state({
        "step": torch.from_numpy(steps), "epoch": torch.from_numpy(steps // 1000),
        "loss": torch.from_numpy(loss), "lr": torch.full((n,), 1e-3, dtype=torch.float64),
        "grad_norm": torch.from_numpy(loss * 2),
        "extras": {"acc": {"step": torch.arange(10, n, 10), "value": torch.linspace(0, 1, (n - 10 + 9) // 10,
                                                                                    dtype=torch.float64)}},
        "evals": [{"step": 500_000, "epoch": 500, "split": "val", "loss": 0.5, "samples": 64, "metrics": {"acc": 0.9},
                   "reason": "schedule"}],
    })
    return history


def test_a_million_step_history_keeps_its_spike_at_chart_resolution():
    history = _history(1_000_000)
    answer = query_metrics(history, ["loss", "extra/acc", "val/loss", "val/acc", "nope"], buckets=800)
    by_name = {s.name: s for s in answer.series}
    assert list(by_name) == ["loss", "extra/acc", "val/loss", "val/acc"]  # in the order asked, unknown left out
    loss = by_name["loss"]
    assert loss.points_in_range == 1_000_000 and loss.downsampled and len(loss.steps) <= 1602
    assert 123_457 in loss.steps.tolist() and loss.values.max() == 1e3
    assert by_name["val/acc"].steps.tolist() == [500_000] and by_name["val/acc"].values.tolist() == [0.9]
    assert answer.total_steps == 1_000_000
    assert answer.epoch_starts[:2] == [(0, 1), (1, 1000)] and len(answer.epoch_starts) == 1001


def test_a_zoomed_range_comes_at_full_resolution():
    history = _history(1_000_000)
    answer = query_metrics(history, ["loss"], start_step=123_000, end_step=124_000, buckets=2000)
    loss = answer.series[0]
    assert loss.steps.tolist() == list(range(123_000, 124_001)) and not loss.downsampled
    assert loss.values[457] == 1e3


def test_every_series_when_none_named():
    names = [s.name for s in query_metrics(_history(1000)).series]
    assert names == sorted(["loss", "lr", "grad_norm", "samples_per_second", "step_seconds", "data_seconds",
                            "extra/acc", "val/acc", "val/loss"])
    # a checkpoint from before the throughput columns existed has none: those series are empty, not misaligned
    empty = {s.name: len(s.steps) for s in query_metrics(_history(1000), ["samples_per_second", "lr"]).series}
    assert empty == {"samples_per_second": 0, "lr": 1000}


@pytest.mark.parametrize("kwargs, fix", [
    ({"start_step": 10, "end_step": 5}, "swap them"),
    ({"start_step": -1}, "not negative"),
    ({"buckets": 100_001}, "chart's width"),
])
def test_bad_queries_name_the_fix(kwargs, fix):
    with pytest.raises(InvalidArgument, match=fix):
        query_metrics(_history(100), **kwargs)
