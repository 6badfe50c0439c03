"""Streamed robust statistics of per-sample losses, so no client ever downloads 10^6 values for a chart.

Fed on the bus's pump thread (``observe``), from the same SAMPLE_LOSSES events the history records:

- a KLL quantile sketch (Apache DataSketches, mergeable, ~1.3% rank error at k=200) of every train loss
  per epoch (the run's is their merge, made when asked), and one per evaluation pass of val/test (the last
  ``MAX_EVAL_SKETCHES``); updates release the GIL, so the training thread never waits on them;
- per train step, the exact quantiles ``STEP_QUANTILES`` of that step's losses (a step holds one batch),
  one row of float32 per step: the quantile bands of a loss chart;
- per sample (dense arrays by base index): its latest loss, the step of it, its count and mean - the
  source of exact histograms and top-k lists unique by sample (a few bytes per sample: 10^6 samples
  take 20 MB).
"""

from __future__ import annotations

import array
import math
import threading
from dataclasses import dataclass

import numpy as np

from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.runtime.events import Event, EventKind

SPLITS = ("train", "val", "test")
STEP_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
KLL_K = 200
MAX_EVAL_SKETCHES = 64
SCOPES = ("run", "epoch", "latest", "eval")
MAX_BINS = 10_000
MAX_TOPK = 100_000
FOLD_ROWS = 16_384  # rows queued before the pump folds them in (a query folds at once)


def _kll():
    from datasketches import kll_floats_sketch

    return kll_floats_sketch(KLL_K)


@dataclass(frozen=True)
class Quantiles:
    """Quantiles ``values`` at ranks ``ranks`` over ``count`` losses (plus their min and max)."""

    split: str
    scope: str
    count: int
    ranks: tuple[float, ...]
    values: tuple[float, ...]
    minimum: float
    maximum: float
    exact: bool  # False: from a KLL sketch (rank error about 1.3% at k=200)


@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` losses fell in [edges[i], edges[i+1]) (the last bin includes its right edge)."""

    split: str
    scope: str
    edges: np.ndarray
    counts: np.ndarray
    total: int
    exact: bool


@dataclass(frozen=True)
class TopK:
    """The ``k`` samples with the highest (or lowest) loss, one row per base index."""

    split: str
    by: str
    index: np.ndarray
    value: np.ndarray
    step: np.ndarray  # the step of each sample's latest loss


@dataclass(frozen=True)
class StepBands:
    """Per train step, the quantiles ``ranks`` of that step's losses (``values[i]`` for ``step[i]``)."""

    step: np.ndarray
    ranks: tuple[float, ...]
    values: np.ndarray  # [len(step), len(ranks)]


class _PerSample:
    """Dense per-sample state keyed by base index, grown on demand."""

    def __init__(self) -> None:
        self.last = np.full(0, np.nan, np.float32)
        self.step = np.full(0, -1, np.int64)
        self.count = np.zeros(0, np.int32)
        self.total = np.zeros(0, np.float64)
        self.stamp = np.zeros(0, np.int64)  # scratch for the repeated-index check

    def _grow(self, size: int) -> None:
        if size <= len(self.last):
            return
        size = max(size, int(len(self.last) * 1.5) + 1024)
        pad = size - len(self.last)
        self.last = np.concatenate([self.last, np.full(pad, np.nan, np.float32)])
        self.step = np.concatenate([self.step, np.full(pad, -1, np.int64)])
        self.count = np.concatenate([self.count, np.zeros(pad, np.int32)])
        self.total = np.concatenate([self.total, np.zeros(pad, np.float64)])
        self.stamp = np.concatenate([self.stamp, np.zeros(pad, np.int64)])

    def update(self, index: np.ndarray, losses: np.ndarray, steps: np.ndarray) -> None:
        """Rows in time order (a drain's worth): the latest loss wins, counts and sums add up."""
        self._grow(int(index.max()) + 1)
        self.last[index] = losses  # numpy assigns in order: a sample seen twice keeps its later loss
        self.step[index] = steps
        # Fancy-index adds are right when no index repeats in the drain, the usual case (checked in O(n):
        # after stamping each row's position, a repeated index keeps only its last one); otherwise one sort.
        # (np.add.at cost ~90 us a call on the pump.)
        self.stamp[index] = np.arange(len(index), dtype=np.int64)
        if np.array_equal(self.stamp[index], np.arange(len(index))):
            self.count[index] += 1
            self.total[index] += losses
        else:
            unique, inverse = np.unique(index, return_inverse=True)
            self.count[unique] += np.bincount(inverse).astype(np.int32)
            self.total[unique] += np.bincount(inverse, weights=losses)

    def seen(self) -> np.ndarray:
        return np.flatnonzero(self.count > 0)


class LossSketches:
    """Robust statistics of a run's per-sample losses. ``observe`` runs on the pump thread; queries are
    safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: dict[int, object] = {}
        self._evals: dict[tuple[str, int], object] = {}
        self._samples = {split: _PerSample() for split in SPLITS}
        self._step_ids = array.array("q")
        self._step_values = array.array("f")
        self._current_step: int | None = None
        self._current: list[np.ndarray] = []
        self._waiting: dict[str, list] = {}  # split -> batches observed, not folded in yet
        self._waiting_rows = 0

    # -- pump thread -----------------------------------------------------------------------------
    def observe(self, events: list[Event]) -> None:
        """Queue a drain's SAMPLE_LOSSES batches; fold them in once ``FOLD_ROWS`` rows wait (or a query asks).
        The pump shares the GIL with the training thread, so its numpy calls are few and large: per fold, one
        KLL update per epoch sketch, one per-sample update per split, the finished steps' quantiles in one sort."""
        rows = 0
        with self._lock:
            waiting = self._waiting
            for event in events:
                if event.kind is not EventKind.SAMPLE_LOSSES:
                    continue
                p = event.payload
                split = p.split if p.split in SPLITS else "train"
                waiting.setdefault(split, []).append((event.step, event.epoch, p.indices, p.losses))
                rows += len(p.losses)
            self._waiting_rows += rows
            if self._waiting_rows >= FOLD_ROWS:
                self._fold_waiting()

    def _fold_waiting(self) -> None:
        """Fold every queued batch in (holding the lock)."""
        waiting, self._waiting, self._waiting_rows = self._waiting, {}, 0
        for split, batches in waiting.items():
            batches = [(s, e, np.asarray(i, dtype=np.int64), np.asarray(v, dtype=np.float32))
                       for s, e, i, v in batches if len(v)]
            if batches:
                self._fold(split, batches)

    def _fold(self, split: str, batches: list[tuple[int, int, np.ndarray, np.ndarray]]) -> None:
        lengths = np.array([len(b[3]) for b in batches])
        losses = np.concatenate([b[3] for b in batches])
        index = np.concatenate([b[2] for b in batches])
        step = np.repeat(np.array([b[0] for b in batches], dtype=np.int64), lengths)
        finite = np.isfinite(losses)
        known = finite & (index >= 0)
        if known.any():
            self._samples[split].update(index[known], losses[known], step[known])
        if split != "train":
            for (s, _, _, _), values in zip(batches, np.split(losses, np.cumsum(lengths)[:-1])):
                values = values[np.isfinite(values)]
                key = (split, s)
                sketch = self._evals.get(key)
                if sketch is None:
                    sketch = self._evals[key] = _kll()
                    while len(self._evals) > MAX_EVAL_SKETCHES:
                        del self._evals[next(iter(self._evals))]
                if len(values):
                    sketch.update(values)
            return
        epoch = np.repeat(np.array([b[1] for b in batches], dtype=np.int64), lengths)
        if not finite.all():
            losses, epoch, step = losses[finite], epoch[finite], step[finite]
        if not len(losses):
            return
        for e in np.unique(epoch).tolist():
            sketch = self._epochs.get(e)
            if sketch is None:
                sketch = self._epochs[e] = _kll()
            sketch.update(losses if epoch[0] == epoch[-1] else losses[epoch == e])
        self._fold_steps(step, losses)

    def _fold_steps(self, step: np.ndarray, losses: np.ndarray) -> None:
        """Close every step these rows finished (all but the last, which later rows may continue)."""
        bounds = np.flatnonzero(np.diff(step)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(step)]])
        groups = [losses[a:b] for a, b in zip(starts, ends)]
        ids = [int(step[a]) for a in starts]
        if self._current_step is not None and self._current:  # the step earlier rows left open
            if ids[0] == self._current_step:
                groups[0] = np.concatenate([*self._current, groups[0]])
            else:
                groups.insert(0, np.concatenate(self._current))
                ids.insert(0, self._current_step)
        self._current, self._current_step = [groups[-1]], ids[-1]
        groups, ids = groups[:-1], ids[:-1]
        if not groups:
            return
        if len({len(g) for g in groups}) == 1:  # the usual case: equal batches, one sort (np.quantile's rule)
            ordered = np.sort(np.stack(groups), axis=1)
            at = np.asarray(STEP_QUANTILES) * (ordered.shape[1] - 1)
            low = np.floor(at).astype(np.int64)
            high = np.minimum(low + 1, ordered.shape[1] - 1)
            values = ordered[:, low] + (ordered[:, high] - ordered[:, low]) * (at - low)
        else:
            values = np.stack([np.quantile(g, STEP_QUANTILES) for g in groups])
        self._step_ids.extend(ids)
        self._step_values.extend(values.astype(np.float32).reshape(-1).tolist())

    # -- queries ---------------------------------------------------------------------------------
    def _sketch(self, split: str, scope: str, epoch: int | None, step: int | None):
        if scope == "run":
            if split != "train":
                raise InvalidArgument("scope 'run' covers train losses; for val/test use scope 'eval' or 'latest'")
            # The epochs' sketches merged (KLL is mergeable): each loss is sketched once, on the pump.
            run = _kll()
            for sketch in self._epochs.values():
                run.merge(sketch)
            return run
        if scope == "epoch":
            if split != "train":
                raise InvalidArgument("scope 'epoch' covers train losses; for val/test use scope 'eval'")
            epoch = max(self._epochs) if epoch is None and self._epochs else epoch
            if epoch not in self._epochs:
                raise InvalidArgument(f"no train losses recorded for epoch {epoch}; epochs recorded: "
                                      f"{_span(sorted(self._epochs))}")
            return self._epochs[epoch]
        if scope == "eval":
            if split == "train":
                raise InvalidArgument("scope 'eval' covers val/test evaluations; for train use 'run', 'epoch' "
                                      "or 'latest'")
            steps = sorted(s for (sp, s) in self._evals if sp == split)
            if not steps:
                raise FailedPrecondition(f"no {split} evaluation with per-sample losses recorded yet")
            step = steps[-1] if step is None else step
            if (split, step) not in self._evals:
                raise InvalidArgument(f"no {split} evaluation at step {step}; evaluations at steps {_span(steps)}")
            return self._evals[(split, step)]
        raise InvalidArgument(f"unknown scope '{scope}'; choose from {', '.join(SCOPES)}")

    def _latest(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        state = self._samples[split]
        seen = state.seen()
        return seen, state.last[seen]

    def quantiles(self, split: str = "train", ranks: tuple[float, ...] = STEP_QUANTILES, *, scope: str = "run",
                  epoch: int | None = None, step: int | None = None) -> Quantiles:
        """Quantiles of ``split``'s losses: over the run ('run'), one epoch ('epoch', default the latest),
        one evaluation ('eval', val/test; default the latest) or each sample's latest loss ('latest', exact)."""
        _check(split)
        ranks = tuple(float(r) for r in ranks) or STEP_QUANTILES
        if any(not 0.0 <= r <= 1.0 for r in ranks):
            raise InvalidArgument(f"quantile ranks must lie in [0, 1], got {list(ranks)}")
        with self._lock:
            self._fold_waiting()
            if scope == "latest":
                _, values = self._latest(split)
                if not len(values):
                    raise FailedPrecondition(f"no {split} per-sample losses recorded yet")
                return Quantiles(split, scope, len(values), ranks, tuple(np.quantile(values, ranks).tolist()),
                                 float(values.min()), float(values.max()), True)
            sketch = self._sketch(split, scope, epoch, step)
            if sketch.is_empty():
                raise FailedPrecondition(f"no {split} per-sample losses recorded yet")
            return Quantiles(split, scope, int(sketch.n), ranks, tuple(float(v) for v in sketch.get_quantiles(ranks)),
                             float(sketch.get_min_value()), float(sketch.get_max_value()), False)

    def histogram(self, split: str = "train", bins: int = 50, *, scope: str = "latest", epoch: int | None = None,
                  step: int | None = None, low: float | None = None, high: float | None = None,
                  log_scale: bool = False) -> Histogram:
        """A ``bins``-bin histogram of ``split``'s losses in [low, high] (default the observed range)."""
        _check(split)
        if not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
            raise InvalidArgument(f"bins must be an integer in 1..{MAX_BINS}, got {bins!r}")
        with self._lock:
            self._fold_waiting()
            if scope == "latest":
                _, values = self._latest(split)
                if not len(values):
                    raise FailedPrecondition(f"no {split} per-sample losses recorded yet")
                lo, hi = _range(float(values.min()), float(values.max()), low, high, log_scale)
                edges = _edges(lo, hi, bins, log_scale)
                counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
                return Histogram(split, scope, edges, counts.astype(np.int64), int(len(values)), True)
            sketch = self._sketch(split, scope, epoch, step)
            if sketch.is_empty():
                raise FailedPrecondition(f"no {split} per-sample losses recorded yet")
            lo, hi = _range(float(sketch.get_min_value()), float(sketch.get_max_value()), low, high, log_scale)
            edges = _edges(lo, hi, bins, log_scale)
            n = int(sketch.n)
            inner = [float(e) for e in edges[1:-1]]
            if inner:
                # KLL's CDF at each inner edge (exclusive); the outer bins absorb what lies beyond [lo, hi].
                cdf = np.asarray(sketch.get_cdf(inner, False)[:-1], dtype=np.float64)
            else:
                cdf = np.empty(0)
            cum = np.concatenate([[0.0], np.round(cdf * n), [float(n)]])
            counts = np.maximum(np.diff(cum), 0).astype(np.int64)
            return Histogram(split, scope, edges, counts, n, False)

    def topk(self, split: str = "train", k: int = 20, *, by: str = "latest", largest: bool = True) -> TopK:
        """The ``k`` samples with the highest (``largest``) or lowest loss, by their latest or mean loss."""
        _check(split)
        if not isinstance(k, int) or not 1 <= k <= MAX_TOPK:
            raise InvalidArgument(f"k must be an integer in 1..{MAX_TOPK}, got {k!r}")
        if by not in ("latest", "mean"):
            raise InvalidArgument(f"rank samples by 'latest' or 'mean' loss, got '{by}'")
        with self._lock:
            self._fold_waiting()
            state = self._samples[split]
            seen = state.seen()
            if not len(seen):
                raise FailedPrecondition(f"no {split} per-sample losses recorded yet")
            values = state.last[seen] if by == "latest" else (state.total[seen] / state.count[seen]).astype(np.float32)
            steps = state.step[seen]
        key = -values if largest else values
        k = min(k, len(seen))
        top = np.argpartition(key, k - 1)[:k] if k < len(seen) else np.arange(len(seen))
        top = top[np.lexsort((seen[top], key[top]))]  # ties: lower index first, so the list is stable
        return TopK(split, by, seen[top], values[top], steps[top])

    def per_sample(self, split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(base indices seen, latest loss, times seen, mean loss) for ``split``: copies."""
        _check(split)
        with self._lock:
            self._fold_waiting()
            state = self._samples[split]
            seen = state.seen()
            return seen, state.last[seen].copy(), state.count[seen].copy(), state.total[seen] / state.count[seen]

    def step_bands(self, first_step: int | None = None, last_step: int | None = None,
                   max_points: int = 2000) -> StepBands:
        """Per-step train loss quantiles in [first_step, last_step], thinned to at most ``max_points`` steps."""
        if not isinstance(max_points, int) or max_points < 1:
            raise InvalidArgument(f"max_points must be a positive integer, got {max_points!r}")
        with self._lock:
            self._fold_waiting()
            steps = np.frombuffer(self._step_ids, dtype=np.int64).copy()
            values = np.frombuffer(self._step_values, dtype=np.float32).reshape(-1, len(STEP_QUANTILES)).copy()
            if self._current_step is not None and self._current:
                steps = np.append(steps, self._current_step)
                now = np.quantile(np.concatenate(self._current), STEP_QUANTILES).astype(np.float32)
                values = np.vstack([values, now[None, :]])
        keep = np.ones(len(steps), bool)
        if first_step is not None:
            keep &= steps >= first_step
        if last_step is not None:
            keep &= steps <= last_step
        steps, values = steps[keep], values[keep]
        if len(steps) > max_points:
            pick = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(np.int64))
            steps, values = steps[pick], values[pick]
        return StepBands(steps, STEP_QUANTILES, values)


def _check(split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")


def _span(values: list[int]) -> str:
    if not values:
        return "none"
    return ", ".join(map(str, values)) if len(values) <= 8 else f"{values[0]}..{values[-1]}"


def _range(lo: float, hi: float, low: float | None, high: float | None, log_scale: bool) -> tuple[float, float]:
    lo = lo if low is None else float(low)
    hi = hi if high is None else float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise InvalidArgument(f"the histogram range [{lo}, {hi}] is empty or not finite")
    if log_scale:
        if hi <= 0:
            raise InvalidArgument("a log-scale histogram needs losses above 0")
        lo = max(lo, hi * 1e-6, 1e-12)
    if hi == lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    return lo, hi


def _edges(lo: float, hi: float, bins: int, log_scale: bool) -> np.ndarray:
    if log_scale:
        return np.geomspace(lo, hi, bins + 1)
    return np.linspace(lo, hi, bins + 1)
