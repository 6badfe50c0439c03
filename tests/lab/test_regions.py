"""Error-region discovery on the digits-shift benchmark: it finds the shifted slice, is reproducible for a
seed and checkpoint, routes unlabelled test samples to it, and refuses bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest

from onthefly.demos.lab_benchmarks import load_benchmark, train_generalist
from onthefly.lab.regions import discover_regions
from onthefly.lab.scoring import embed, score
from onthefly.runtime.errors import InvalidArgument, NotFound


@pytest.fixture(scope="module")
def shifted():
    bench = load_benchmark("digits-shift", 202)
    model, _ = train_generalist(bench, 202)
    return bench, model, score(model, bench.train_dataset())


def test_finds_the_shifted_slice_and_routes_test_samples_to_it(shifted):
    bench, model, table = shifted
    regions = discover_regions(table, bench.x_train, seed=0)
    assert [r.id for r in regions.regions][:1] == ["r1"]
    hard = bench.hard_mask("train")
    r1 = regions.region("r1")
    assert hard[r1.positions].mean() >= 0.95 and hard[r1.positions].sum() >= 0.9 * hard.sum()
    assert r1.loss_ratio >= regions.ratio and r1.mean_loss > table.mean_loss
    assert np.array_equal(r1.indices, table.index[r1.positions])
    # the router reproduces the training rows' regions and places unlabelled test samples
    assert np.array_equal(regions.assign(bench.x_train, table.embedding), regions.row_regions())
    routed = regions.assign(bench.x_test, embed(model, bench.x_test)) == regions.position_of("r1")
    test_hard = bench.hard_mask("test")
    assert routed[test_hard].mean() >= 0.9 and test_hard[routed].mean() >= 0.9


def test_reproducible_for_a_seed_and_checkpoint(shifted):
    bench, _, table = shifted
    a = discover_regions(table, bench.x_train, seed=3)
    b = discover_regions(table, bench.x_train, seed=3)
    assert np.array_equal(a.clusters, b.clusters) and np.array_equal(a.centroids, b.centroids)
    assert [(r.id, r.indices.tolist()) for r in a.regions] == [(r.id, r.indices.tolist()) for r in b.regions]
    assert a.state_hash == table.state_hash


def test_ratio_and_max_regions_decide_what_is_a_region(shifted):
    bench, _, table = shifted
    everything = discover_regions(table, bench.x_train, ratio=1e-9, max_regions=8)
    assert len(everything) == 8 and sorted(r.size for r in everything.regions) == sorted(
        np.bincount(everything.clusters).tolist())
    excess = [r.excess_loss for r in everything.regions]
    assert excess == sorted(excess, reverse=True)
    assert len(discover_regions(table, bench.x_train, ratio=1e-9, max_regions=2)) == 2
    assert len(discover_regions(table, bench.x_train, ratio=100.0)) == 0
    embedding_only = discover_regions(table, None)
    assert not embedding_only.space.uses_input and embedding_only.space.uses_embedding


def test_bad_input_is_refused_clearly(shifted):
    bench, _, table = shifted
    with pytest.raises(InvalidArgument, match=f"more than the {len(table)} scored samples"):
        discover_regions(table, bench.x_train, k=len(table) + 1)
    with pytest.raises(InvalidArgument, match="k must be"):
        discover_regions(table, bench.x_train, k=0)
    with pytest.raises(InvalidArgument, match="rows"):
        discover_regions(table, bench.x_train[:10])
    regions = discover_regions(table, bench.x_train)
    with pytest.raises(NotFound, match="no region 'r9'.*regions: r1"):
        regions.region("r9")
    with pytest.raises(InvalidArgument, match="pass x="):
        regions.assign(None, table.embedding)
    with pytest.raises(InvalidArgument, match="features here"):
        regions.assign(bench.x_train[:, :10], table.embedding)
