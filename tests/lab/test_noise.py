"""Noise or regime: the label-noise control's region is flagged, the digits-shift slice is not."""

from __future__ import annotations

import os

import numpy as np
import pytest

from onthefly.demos.lab_benchmarks import load_benchmark, train_generalist
from onthefly.lab.noise import NOISE, REGIME, find_issues, region_verdicts
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import score
from onthefly.runtime.errors import InvalidArgument

_FORKS: list[int] = []
os.register_at_fork(before=lambda: _FORKS.append(1))


def _scored(name: str, seed: int):
    bench = load_benchmark(name, seed)
    model, _ = train_generalist(bench, seed)
    table = score(model, bench.train_dataset())
    return bench, table, discover_regions(table, bench.x_train, seed=seed)


def test_label_noise_region_is_flagged_with_evidence():
    bench, table, regions = _scored("digits-noise", 201)
    forks = len(_FORKS)
    issues = find_issues(table, bench.x_train, seed=0)
    # It runs inside the user's training process (a gRPC server, torch's threads): never forked from there.
    assert len(_FORKS) == forks, "the label-noise check forked the process (cleanlab's pool)"
    assert bench.noisy_train[issues.issues].mean() >= 0.8  # flagged samples are mostly truly flipped
    verdicts = region_verdicts(table, regions, bench.x_train, issues=issues)
    assert [v.region_id for v in verdicts] == [r.id for r in regions.regions]
    noisy = [v for v in verdicts if v.noisy]
    assert noisy and noisy[0].verdict == NOISE and noisy[0].noise_fraction >= 2 * noisy[0].rest_fraction
    assert set(noisy[0].examples) <= set(table.index[issues.issues].tolist())


def test_a_regime_is_not_called_noise():
    bench, table, regions = _scored("digits-shift", 202)
    verdicts = region_verdicts(table, regions, bench.x_train, seed=0)
    assert verdicts and all(v.verdict == REGIME and not v.noisy for v in verdicts)


def test_bad_input():
    bench, table, regions = _scored("digits-shift", 203)
    with pytest.raises(InvalidArgument, match="classifier"):
        find_issues(table, bench.x_train, classifier="svm")
    other = score(train_generalist(bench, 1, epochs=1)[0], bench.val_dataset())
    with pytest.raises(InvalidArgument, match="another score table"):
        region_verdicts(other, regions)
    with pytest.raises(InvalidArgument, match="rows"):
        find_issues(table, np.zeros((3, 64)))


def test_large_tables_are_checked_on_a_seeded_sample():
    bench, table, regions = _scored("digits-noise", 202)
    issues = find_issues(table, bench.x_train, seed=1, max_samples=600)
    again = find_issues(table, bench.x_train, seed=1, max_samples=600)
    assert issues.checked.sum() == 600 and np.array_equal(issues.checked, again.checked)
    assert not issues.issues[~issues.checked].any() and np.all(issues.suggested[~issues.checked] == -1)
    verdicts = region_verdicts(table, regions, bench.x_train, issues=issues)
    assert any(v.noisy for v in verdicts)
    assert "600 of" in verdicts[0].method


def test_too_few_samples_per_class_gives_unchecked_verdicts_not_an_error():
    import torch

    from onthefly.demos.boring import BoringModel, boring_dataset
    from onthefly.lab.noise import UNCHECKED

    torch.manual_seed(0)
    data = boring_dataset(40, seed=0)
    data.tensors[1][:] = 0
    data.tensors[1][0] = 1  # one sample of label 1: nothing to cross-validate it against
    table = score(BoringModel(), data)
    regions = discover_regions(table, None, k=2, ratio=0.5)
    verdicts = region_verdicts(table, regions)
    assert verdicts and all(v.verdict == UNCHECKED and not v.noisy for v in verdicts)
    assert "2 classes with 2 samples" in verdicts[0].reason
