"""Error-region discovery (PROTOCOL finding 2): cluster ALL samples label-free, keep the high-loss clusters.

    regions = discover_regions(table, x=inputs, k=8, ratio=1.5, max_regions=4, seed=0)
    where = regions.assign(x_test, embed(model, x_test))     # region position per sample, -1 = rest

Every scored sample is placed in a label-free space (``features.py``: PCA-8 of the inputs beside PCA-8
of the embedding, blocks scaled to equal variance) and k-means (scikit-learn, ``n_init=10``, seeded)
splits it into ``k`` clusters. A cluster is a region when its mean loss is at least ``ratio`` times
the overall mean; at most ``max_regions`` are kept, ranked by excess loss (size x (cluster mean -
overall mean): how much of the run's loss above average the cluster holds), and named r1, r2, ... in
that order. Losses pick regions but never shape them, which is why a region is routable: ``assign``
puts any sample, labelled or not, in its nearest centroid's region.

Why not cluster the hard samples (top-loss set)? Measured: that set is mostly boundary samples and
noise, and clusters of it cannot be recognised at test time because loss needs labels.

The default ratio is 1.5, not the protocol's 2.0: with the protocol's generalist (10 epochs of Adam
1e-3, batch 64) reproduced by ``onthefly/demos/lab_benchmarks.py``, the digits-shift slice's cluster sits
at 1.75-2.27x the overall mean loss over seeds 200-214 (2.0 misses it in 8 of 15) while no other
cluster passes 1.27x; on the label-noise control the noisy classes' clusters sit at 1.46-1.86x.

k defaults to 8, the protocol's measured value; ``k=None`` applies the documented rule
``min(8, max(2, N // 25))`` so that small tables still get clusters of about 25 samples or more.
The result is deterministic for a given seed and score table (same weights, same samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onthefly.lab.features import FeatureSpace, fit_space
from onthefly.lab.scoring import ScoreTable
from onthefly.runtime.errors import InvalidArgument, NotFound

REST = -1
DEFAULT_RATIO = 1.5


@dataclass(frozen=True, eq=False)
class Region:
    """One discovered region: a k-means cluster whose mean loss is ``ratio``x the overall mean or more."""

    id: str  # "r1" is the region with the largest excess loss
    cluster: int  # its k-means cluster
    indices: np.ndarray  # int64 base-dataset indices of its members (table order)
    positions: np.ndarray  # their rows in the score table
    mean_loss: float
    loss_ratio: float  # mean_loss / the table's mean loss
    excess_loss: float  # size x (mean_loss - overall mean loss)
    accuracy: float  # fraction of members the scored model classified correctly
    centroid: np.ndarray  # in the feature space

    @property
    def size(self) -> int:
        return int(len(self.indices))


@dataclass(frozen=True, eq=False)
class RegionSet:
    """The regions of one scoring pass, with everything needed to route new samples to them."""

    regions: tuple[Region, ...]
    space: FeatureSpace
    centroids: np.ndarray  # (k, dims): every cluster's centre, region or not
    clusters: np.ndarray  # int64 (N,): each table row's cluster
    index: np.ndarray  # int64 (N,): each table row's base index
    overall_mean_loss: float
    k: int
    ratio: float
    max_regions: int
    seed: int
    state_hash: str  # the weights whose scores (and embedding) defined the regions
    layer: str  # which embedding was used, as ScoreTable.layer
    split: str

    def __len__(self) -> int:
        return len(self.regions)

    def region(self, region_id: str) -> Region:
        """The region named ``region_id``; ``NotFound`` lists the ids that exist."""
        for region in self.regions:
            if region.id == region_id:
                return region
        known = ", ".join(r.id for r in self.regions) or "none were found"
        raise NotFound(f"no region {region_id!r} in this discovery (regions: {known})")

    def position_of(self, region_id: str) -> int:
        """The position ``assign`` reports for ``region_id``."""
        return self.regions.index(self.region(region_id))

    def row_regions(self) -> np.ndarray:
        """Region position of each scored row (-1 for the rest), as ``assign`` would give for them."""
        return self._cluster_to_position()[self.clusters]

    def cluster_of(self, x: np.ndarray | None = None, embedding: np.ndarray | None = None) -> np.ndarray:
        """Nearest cluster of each sample (all ``k`` clusters, regions or not)."""
        points = self.space.transform(x, embedding)
        # |p - c|^2 without the (N, k, dims) difference array: p.p is the same for every centroid.
        distances = (self.centroids ** 2).sum(axis=1)[None, :] - 2.0 * points @ self.centroids.T
        return distances.argmin(axis=1).astype(np.int64)

    def assign(self, x: np.ndarray | None = None, embedding: np.ndarray | None = None) -> np.ndarray:
        """The label-free router: each sample's region position (index into ``regions``), -1 for the rest.

        Pass the arrays the regions were fitted with: the raw inputs (``x``, same features as at
        discovery) and/or the embedding of the scored model (``scoring.embed``).
        """
        return self._cluster_to_position()[self.cluster_of(x, embedding)]

    def _cluster_to_position(self) -> np.ndarray:
        lookup = np.full(self.k, REST, dtype=np.int64)
        for position, region in enumerate(self.regions):
            lookup[region.cluster] = position
        return lookup


def discover_regions(table: ScoreTable, x: np.ndarray | None = None, *, k: int | None = 8, ratio: float = DEFAULT_RATIO,
                     max_regions: int = 4, seed: int = 0, n_components: int = 8,
                     use_embedding: bool = True) -> RegionSet:
    """Find the error regions of ``table`` (see the module docstring).

    ``x`` holds the inputs of the table's samples, row for row (any shape; flattened per sample); without
    it only the embedding is used. ``use_embedding=False`` clusters the inputs alone.
    """
    n = len(table)
    if n == 0:
        raise InvalidArgument("the score table is empty: score some samples before discovering regions")
    if k is None:
        k = min(8, max(2, n // 25))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgument(f"k must be a positive number of clusters, got {k!r}")
    if k > n:
        raise InvalidArgument(f"k={k} clusters is more than the {n} scored samples; choose k <= {n}")
    if not ratio > 0:
        raise InvalidArgument(f"ratio must be > 0 (a region's mean loss over the overall mean), got {ratio}")
    if max_regions < 1:
        raise InvalidArgument(f"max_regions must be >= 1, got {max_regions}")
    if x is not None and len(x) != n:
        raise InvalidArgument(f"x has {len(x)} rows but the score table has {n}; pass the inputs of the "
                              "scored samples in table order")
    embedding = table.embedding if use_embedding else None
    space = fit_space(x, embedding, n_components)
    points = space.transform(x, embedding)
    centroids, clusters = _kmeans(points, int(k), seed)
    loss = table.loss.astype(np.float64)
    overall = float(loss.mean())
    candidates = []
    for cluster in range(int(k)):
        rows = np.flatnonzero(clusters == cluster)
        if len(rows) == 0:
            continue
        mean = float(loss[rows].mean())
        if overall > 0 and mean >= ratio * overall:
            candidates.append((len(rows) * (mean - overall), cluster, rows, mean))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    regions = tuple(
        Region(id=f"r{rank + 1}", cluster=cluster, indices=table.index[rows].copy(), positions=rows,
               mean_loss=mean, loss_ratio=mean / overall, excess_loss=float(excess),
               accuracy=float(table.correct[rows].mean()), centroid=centroids[cluster])
        for rank, (excess, cluster, rows, mean) in enumerate(candidates[:max_regions]))
    return RegionSet(regions=regions, space=space, centroids=centroids, clusters=clusters, index=table.index.copy(),
                     overall_mean_loss=overall, k=int(k), ratio=float(ratio), max_regions=int(max_regions),
                     seed=int(seed), state_hash=table.state_hash, layer=table.layer, split=table.split)


def _kmeans(points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    distinct = len(np.unique(points, axis=0))
    if k > distinct:
        raise InvalidArgument(f"k={k} clusters but only {distinct} distinct samples in the feature space; "
                              f"choose k <= {distinct}")
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
    return model.cluster_centers_.astype(np.float64), model.labels_.astype(np.int64)
