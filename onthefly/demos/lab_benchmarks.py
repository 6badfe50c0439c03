"""The lab's four benchmarks (``/work/shared/lab/PROTOCOL.md``), built in-process with no downloads.

    bench = load_benchmark("digits-shift", seed=200)
    model = make_generalist(bench.n_features, bench.n_classes, seed=200)

Every seed redraws the split, the hard slice, the label flips and (through ``make_generalist``) the
initial weights. Splits: 70/30 stratified train/test; the validation split is the last
``VAL_FRACTION`` (20%) of the 70% train portion, also stratified, so ``x_train`` holds 56% of the data.
Validation is carved from train, so it carries whatever label noise train carries; test never has
injected noise except where the dataset's own definition has flips everywhere (mixture, imbalanced).

- ``digits-shift``: ``load_digits`` scaled to [0, 1]; a random 12% of all images (every class) is
  rotated 90 degrees and intensity-inverted (a "second scanner"). Groups {0: clean, 1: shifted};
  the hard slice is group 1.
- ``mixture``: 16 features. Four context features place a sample in one of 5 Gaussian components;
  the 4 majority components (92%) follow y = [w . z0..5 > 0], the minority component (8%) follows
  y = [u . z6..11 > 0]. 2% of labels flipped. Groups = components; hard slice = the minority one.
- ``imbalanced``: ``make_classification`` with 4 classes x 3 clusters per class, class weights
  50/30/13/7%, ``shuffle=False`` so each sample's generating cluster is known; 1% of labels flipped
  (here, not by sklearn, so the flipped mask is exact). Groups = the 12 clusters; hard slice = the
  clusters of the rarest class.
- ``digits-noise`` (control): ``load_digits``; in the train portion only, 30% of the samples of
  classes 3/5/8/9 get another label from that set. Test is clean. Groups = the true class; hard
  slice = classes 3/5/8/9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

BENCHMARKS = ("digits-shift", "mixture", "imbalanced", "digits-noise")
TEST_FRACTION = 0.3
VAL_FRACTION = 0.2  # of the train portion

SHIFT_FRACTION = 0.12
MIXTURE_N, MIXTURE_MINORITY, MIXTURE_FLIP = 4000, 0.08, 0.02
IMBALANCED_N, IMBALANCED_WEIGHTS, IMBALANCED_FLIP = 3000, (0.50, 0.30, 0.13, 0.07), 0.01
NOISE_CLASSES, NOISE_FRACTION = (3, 5, 8, 9), 0.30


@dataclass(frozen=True, eq=False)
class LabBenchmark:
    """One seeded draw of a benchmark: three splits, group ids for worst-group accuracy, the hard slice."""

    name: str
    seed: int
    x_train: np.ndarray  # float32 (N, n_features)
    y_train: np.ndarray  # int64 (N,)
    g_train: np.ndarray  # int64 (N,) group id per sample
    x_val: np.ndarray
    y_val: np.ndarray
    g_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    g_test: np.ndarray
    n_classes: int
    n_features: int
    hard_groups: tuple[int, ...]  # group ids that form the hard slice
    group_names: tuple[str, ...]  # group_names[g] names group id g
    noisy_train: np.ndarray  # bool (N_train,): this label was flipped (all False where none were)
    noisy_val: np.ndarray  # bool (N_val,)

    def train_dataset(self) -> TensorDataset:
        return _dataset(self.x_train, self.y_train)

    def val_dataset(self) -> TensorDataset:
        return _dataset(self.x_val, self.y_val)

    def test_dataset(self) -> TensorDataset:
        return _dataset(self.x_test, self.y_test)

    def hard_mask(self, split: str = "train") -> np.ndarray:
        """Bool mask of the hard slice in one split ("train", "val" or "test")."""
        groups = {"train": self.g_train, "val": self.g_val, "test": self.g_test}.get(split)
        if groups is None:
            raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")
        return np.isin(groups, np.asarray(self.hard_groups, dtype=np.int64))


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))


def make_generalist(n_features: int, n_classes: int, seed: int) -> nn.Module:
    """The protocol's generalist, MLP d->32->32->C with ReLU, initialised from ``seed`` without touching
    the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                             nn.Linear(32, n_classes))


def train_generalist(bench: LabBenchmark, seed: int, *, epochs: int = 10, batch_size: int = 64,
                     lr: float = 1e-3) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The protocol's base budget: a fresh generalist trained with Adam on ``x_train`` (shuffled by a
    generator seeded from ``seed``; the global RNG is left alone). Returns (model, optimizer)."""
    model = make_generalist(bench.n_features, bench.n_classes, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(bench.x_train), torch.from_numpy(bench.y_train)
    order = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=order)
        for start in range(0, len(y), batch_size):
            batch = perm[start:start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model, optimizer


def load_benchmark(name: str, seed: int) -> LabBenchmark:
    """Build benchmark ``name`` (one of ``BENCHMARKS``) for ``seed``; deterministic for a (name, seed)."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return builder(int(seed))


# ---------------------------------------------------------------------------------------------------
# Builders: each returns the whole pool (x, y, g, noisy, stratify key) and `_split` cuts it.

def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def _digits_shift(seed: int) -> LabBenchmark:
    rng = np.random.default_rng(seed)
    x, y = _digits()
    shifted = np.zeros(len(y), dtype=bool)
    shifted[rng.choice(len(y), size=int(round(SHIFT_FRACTION * len(y))), replace=False)] = True
    images = x[shifted].reshape(-1, 8, 8)
    x[shifted] = (1.0 - np.rot90(images, k=1, axes=(1, 2))).reshape(-1, 64)
    g = shifted.astype(np.int64)
    return _split("digits-shift", seed, rng, x, y, g, np.zeros(len(y), dtype=bool), key=y * 2 + g,
                  n_classes=10, hard_groups=(1,), group_names=("clean", "shifted"))


def _mixture(seed: int) -> LabBenchmark:
    rng = np.random.default_rng(seed)
    n, components = MIXTURE_N, 5
    minority = components - 1
    p = np.full(components, (1.0 - MIXTURE_MINORITY) / (components - 1))
    p[minority] = MIXTURE_MINORITY
    g = rng.choice(components, size=n, p=p).astype(np.int64)
    centers = rng.normal(0.0, 3.0, size=(components, 4))
    context = centers[g] + rng.normal(size=(n, 4))
    z = rng.normal(size=(n, 12))
    w, u = rng.normal(size=6), rng.normal(size=6)
    y = np.where(g == minority, z[:, 6:12] @ u > 0, z[:, 0:6] @ w > 0).astype(np.int64)
    y, noisy = _flip(rng, y, MIXTURE_FLIP, lambda old: 1 - old)
    x = np.concatenate([context, z], axis=1).astype(np.float32)
    names = tuple(f"component {i}" for i in range(minority)) + (f"component {minority} (minority)",)
    return _split("mixture", seed, rng, x, y, g, noisy, key=g * 2 + (y ^ noisy), n_classes=2,
                  hard_groups=(minority,), group_names=names)


def _imbalanced(seed: int) -> LabBenchmark:
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(seed)
    classes, per_class = 4, 3
    x, y = make_classification(n_samples=IMBALANCED_N, n_features=16, n_informative=6, n_redundant=2,
                               n_classes=classes, n_clusters_per_class=per_class,
                               weights=list(IMBALANCED_WEIGHTS), flip_y=0.0, shuffle=False,
                               random_state=int(rng.integers(2**31 - 1)))
    g = _generating_clusters(IMBALANCED_N, classes, per_class, IMBALANCED_WEIGHTS)
    if not np.array_equal(g % classes, y):  # sklearn changed its cluster layout; refuse to mislabel groups
        raise RuntimeError("make_classification's cluster order is not the one this benchmark relies on")
    y = y.astype(np.int64)
    y, noisy = _flip(rng, y, IMBALANCED_FLIP, lambda old: (old + rng.integers(1, classes, size=len(old))) % classes)
    rarest = int(np.argmin(IMBALANCED_WEIGHTS))
    names = tuple(f"class {k % classes} cluster {k // classes}" for k in range(classes * per_class))
    hard = tuple(k for k in range(classes * per_class) if k % classes == rarest)
    return _split("imbalanced", seed, rng, x.astype(np.float32), y, g, noisy, key=g, n_classes=classes,
                  hard_groups=hard, group_names=names)


def _generating_clusters(n: int, classes: int, per_class: int, weights: tuple[float, ...]) -> np.ndarray:
    """Cluster id of each row of ``make_classification(shuffle=False)``, by its documented layout: cluster k
    has label k % classes, and rows come cluster by cluster."""
    clusters = classes * per_class
    counts = [int(n * weights[k % classes] / per_class) for k in range(clusters)]
    for i in range(n - sum(counts)):
        counts[i % clusters] += 1
    return np.repeat(np.arange(clusters, dtype=np.int64), counts)


def _digits_noise(seed: int) -> LabBenchmark:
    rng = np.random.default_rng(seed)
    x, y = _digits()
    return _split("digits-noise", seed, rng, x, y, y.copy(), np.zeros(len(y), dtype=bool), key=y,
                  n_classes=10, hard_groups=NOISE_CLASSES, group_names=tuple(f"digit {d}" for d in range(10)),
                  relabel_train=True)


def _flip(rng: np.random.Generator, y: np.ndarray, fraction: float,
          other: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Give a random ``fraction`` of labels another label; returns (labels, flipped mask)."""
    noisy = np.zeros(len(y), dtype=bool)
    noisy[rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)] = True
    y = y.copy()
    y[noisy] = other(y[noisy])
    return y, noisy


def _relabel_within(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """digits-noise: 30% of each noise class's samples get another class of the noise set."""
    original, y = y, y.copy()
    noisy = np.zeros(len(y), dtype=bool)
    pool = np.asarray(NOISE_CLASSES)
    for cls in NOISE_CLASSES:
        members = np.flatnonzero(original == cls)
        chosen = rng.choice(members, size=int(round(NOISE_FRACTION * len(members))), replace=False)
        others = pool[pool != cls]
        y[chosen] = others[rng.integers(0, len(others), size=len(chosen))]
        noisy[chosen] = True
    return y, noisy


def _split(name: str, seed: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, g: np.ndarray,
           noisy: np.ndarray, *, key: np.ndarray, n_classes: int, hard_groups: tuple[int, ...],
           group_names: tuple[str, ...], relabel_train: bool = False) -> LabBenchmark:
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(y))
    train, test = train_test_split(everything, test_size=TEST_FRACTION, stratify=key,
                                   random_state=int(rng.integers(2**31 - 1)))
    if relabel_train:  # the noise lives in the train portion only (validation included), never in test
        y_train_portion, noisy_train_portion = _relabel_within(rng, y[train])
        y, noisy = y.copy(), noisy.copy()
        y[train], noisy[train] = y_train_portion, noisy_train_portion
    train, val = train_test_split(train, test_size=VAL_FRACTION, stratify=key[train],
                                  random_state=int(rng.integers(2**31 - 1)))
    train, val, test = np.sort(train), np.sort(val), np.sort(test)
    return LabBenchmark(
        name=name, seed=seed,
        x_train=x[train], y_train=y[train], g_train=g[train],
        x_val=x[val], y_val=y[val], g_val=g[val],
        x_test=x[test], y_test=y[test], g_test=g[test],
        n_classes=n_classes, n_features=x.shape[1], hard_groups=tuple(int(h) for h in hard_groups),
        group_names=group_names, noisy_train=noisy[train], noisy_val=noisy[val])


_BUILDERS: dict[str, Callable[[int], LabBenchmark]] = {
    "digits-shift": _digits_shift,
    "mixture": _mixture,
    "imbalanced": _imbalanced,
    "digits-noise": _digits_noise,
}
