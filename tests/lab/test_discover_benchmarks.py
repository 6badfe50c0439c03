"""The lab benchmarks: shapes, dtypes, determinism per seed, and the slices they promise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onthefly.demos.lab_benchmarks import BENCHMARKS, load_benchmark, make_generalist

FIELDS = ("x_train", "y_train", "g_train", "x_val", "y_val", "g_val", "x_test", "y_test", "g_test")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_is_a_stratified_deterministic_draw(name):
    a, b, other = load_benchmark(name, 200), load_benchmark(name, 200), load_benchmark(name, 201)
    for field in FIELDS:
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.y_train, other.y_train) or not np.array_equal(a.x_train, other.x_train)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64 and a.g_train.dtype == np.int64
    assert a.x_train.shape[1] == a.n_features
    total = len(a.y_train) + len(a.y_val) + len(a.y_test)
    assert len(a.y_test) == pytest.approx(0.3 * total, abs=1)
    assert len(a.y_val) == pytest.approx(0.2 * 0.7 * total, abs=2)
    assert set(np.unique(a.y_test)) == set(range(a.n_classes))
    assert a.hard_mask("train").any() and a.hard_mask("test").any()
    x, y = a.train_dataset()[0]
    assert torch.equal(x, torch.from_numpy(a.x_train[0])) and int(y) == a.y_train[0]


def test_digits_shift_slice_is_twelve_percent_rotated_and_inverted():
    bench = load_benchmark("digits-shift", 200)
    shifted = np.concatenate([bench.g_train, bench.g_val, bench.g_test]) == 1
    assert shifted.mean() == pytest.approx(0.12, abs=0.005)
    assert bench.hard_groups == (1,) and not bench.noisy_train.any()
    # an inverted image is mostly bright: its background (0 in load_digits) became 1
    assert bench.x_train[bench.g_train == 1].mean() > 0.5 > bench.x_train[bench.g_train == 0].mean()


def test_digits_noise_relabels_train_within_the_noise_classes_and_keeps_test_clean():
    bench = load_benchmark("digits-noise", 200)
    noisy = bench.noisy_train
    assert noisy.any() and not np.any(bench.y_train[noisy] == bench.g_train[noisy])
    assert set(np.unique(bench.y_train[noisy])) <= {3, 5, 8, 9}
    assert set(np.unique(bench.g_train[noisy])) <= {3, 5, 8, 9}
    assert np.array_equal(bench.y_test, bench.g_test)  # group = true class; test labels untouched
    in_set = np.isin(bench.g_train, (3, 5, 8, 9))
    assert noisy[in_set].mean() == pytest.approx(0.3, abs=0.05)


def test_imbalanced_groups_are_the_generating_clusters_of_the_labels():
    bench = load_benchmark("imbalanced", 200)
    clean = ~bench.noisy_train
    assert np.array_equal(bench.g_train[clean] % 4, bench.y_train[clean])
    assert bench.hard_groups == (3, 7, 11)


def test_generalist_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a, b = make_generalist(64, 10, seed=3), make_generalist(64, 10, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.zeros(2, 64)).shape == (2, 10)


def test_unknown_benchmark_names_the_choices():
    with pytest.raises(ValueError, match="digits-shift"):
        load_benchmark("cifar", 0)
