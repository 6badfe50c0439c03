"""A region's description on digits-shift: the numbers match the table, the trend reads the history's shape."""

from __future__ import annotations

import numpy as np
import pytest

from onthefly.demos.lab_benchmarks import load_benchmark, train_generalist
from onthefly.lab.describe import describe_region, member_trend, trend_from_history
from onthefly.lab.noise import region_verdicts
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import score
from onthefly.runtime.errors import NotFound


def test_describes_the_shifted_slice():
    bench = load_benchmark("digits-shift", 207)
    model, _ = train_generalist(bench, 207)
    table = score(model, bench.train_dataset())
    regions = discover_regions(table, bench.x_train)
    verdict = region_verdicts(table, regions, bench.x_train)[0]
    names = [f"pixel ({i // 8}, {i % 8})" for i in range(64)]
    trend = member_trend([0, 1, 2], [2.0, 1.5, 1.2])
    text = describe_region(table, regions, "r1", x=bench.x_train, feature_names=names, trend=trend, verdict=verdict)
    r1 = regions.region("r1")
    inside = np.isin(table.index, r1.indices)
    assert text.size == r1.size == sum(text.class_mix.values())
    assert text.accuracy_in == pytest.approx(table.correct[inside].mean())
    assert text.accuracy_out == pytest.approx(table.correct[~inside].mean())
    assert text.accuracy_in < text.accuracy_out
    # the slice is intensity-inverted: its background pixels are far brighter than everyone else's
    assert text.features and text.features[0][0].startswith("pixel") and text.features[0][1] > 1.0
    assert text.trend == "getting better" and text.verdict == "regime"
    assert len(text.examples) == 8 and set(text.examples) <= set(r1.indices.tolist())
    worst = table.index[r1.positions[np.argmax(table.loss[r1.positions])]]
    assert text.examples[0] == worst
    assert "r1" in text.sentence and "getting better" in text.sentence and "pixel" in text.sentence
    with pytest.raises(NotFound):
        describe_region(table, regions, "r7")


def test_trend_from_the_history_matrix():
    indices = np.array([1, 2, 3])
    losses = np.array([[1.0, 1.1, 1.3], [1.0, np.nan, 1.2], [0.1, 0.05, 0.01]])
    assert trend_from_history(indices, np.array([0, 1, 2]), losses, np.array([1, 2])).label == "getting worse"
    assert trend_from_history(indices, np.array([0, 1, 2]), losses, np.array([9])).label == "unknown"
    assert member_trend([0, 1, 2], [1.0, 1.0, 1.001]).label == "flat"
