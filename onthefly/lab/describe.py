"""What a person reads about a region: how big, how bad, what is in it, what sets it apart, whether it
is getting better, and a few samples to look at.

    text = describe_region(table, regions, "r1", x=inputs, trend=member_trend(epochs, losses), verdict=v)
    print(text.sentence)

Pure: it reads a score table, the region set found on it, optionally the inputs (for the distinguishing
input features), the members' loss per epoch from the history (for the trend) and the noise verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from onthefly.lab.noise import RegionVerdict
from onthefly.lab.regions import RegionSet
from onthefly.lab.scoring import ScoreTable
from onthefly.runtime.errors import InvalidArgument

UNCHECKED = "unchecked"
FLAT_FRACTION = 0.02  # |slope| under 2% of the mean loss per epoch reads as flat


@dataclass(frozen=True)
class Trend:
    """The members' mean loss per epoch, and what it says."""

    epochs: tuple[int, ...]
    mean_loss: tuple[float, ...]
    slope: float  # least-squares change of the mean loss per epoch (NaN: fewer than 2 epochs)
    label: str  # "getting better", "getting worse", "flat" or "unknown"


@dataclass(frozen=True)
class RegionDescription:
    """The human description of a region (field order and meaning shared with ``lab.Lab.describe``)."""

    region_id: str
    split: str
    size: int
    mean_loss: float
    loss_ratio: float
    accuracy_in: float
    accuracy_out: float
    class_mix: dict[int, int]  # label -> members
    features: list[tuple[str, float]]  # (input feature, standardized mean difference in vs out), strongest first
    trend: str
    trend_slope: float
    examples: list[int]  # member base indices: the worst few, then a seeded sample of the rest
    sentence: str
    verdict: str  # "regime", "likely label noise - do not upweight", or "unchecked"
    noise_fraction: float  # members flagged as label issues (NaN: unchecked)
    labels: list[tuple[int, float, float]] = field(default_factory=list)  # (label, share in, share out), most over-represented first
    share: float = float("nan")  # fraction of the scored split the region holds


def member_trend(epochs: Sequence[int], mean_loss: Sequence[float]) -> Trend:
    """Read a trend off the members' mean loss per epoch (least squares)."""
    e = np.asarray(epochs, dtype=np.float64)
    m = np.asarray(mean_loss, dtype=np.float64)
    keep = np.isfinite(m)
    e, m = e[keep], m[keep]
    if len(e) < 2:
        return Trend(tuple(int(v) for v in e), tuple(float(v) for v in m), float("nan"), "unknown")
    slope = float(np.polyfit(e, m, 1)[0])
    scale = max(float(np.abs(m).mean()), 1e-12)
    label = "flat" if abs(slope) < FLAT_FRACTION * scale else ("getting better" if slope < 0 else "getting worse")
    return Trend(tuple(int(v) for v in e), tuple(float(v) for v in m), slope, label)


def trend_from_history(indices: np.ndarray, epochs: np.ndarray, losses: np.ndarray, members: np.ndarray) -> Trend:
    """The trend of ``members`` from a per-epoch loss matrix (rows: ``indices``; columns: ``epochs``; NaN where
    a sample was not seen), the shape ``SampleHistory.epoch_losses`` returns."""
    rows = np.isin(np.asarray(indices), np.asarray(members))
    if not rows.any() or len(epochs) == 0:
        return Trend((), (), float("nan"), "unknown")
    block = np.asarray(losses, dtype=np.float64)[rows]
    seen = np.isfinite(block).any(axis=0)
    means = np.full(block.shape[1], np.nan)
    means[seen] = np.nanmean(block[:, seen], axis=0)
    return member_trend(np.asarray(epochs), means)


def describe_region(table: ScoreTable, regions: RegionSet, region_id: str, *, x: np.ndarray | None = None,
                    feature_names: Sequence[str] | None = None, trend: Trend | None = None,
                    verdict: RegionVerdict | None = None, n_examples: int = 8, n_features: int = 5) -> RegionDescription:
    """Describe region ``region_id`` of ``regions`` (discovered on ``table``)."""
    if not np.array_equal(regions.index, table.index):
        raise InvalidArgument("these regions were discovered on another score table; pass the table they came from")
    region = regions.region(region_id)
    inside = np.zeros(len(table), bool)
    inside[region.positions] = True
    outside = ~inside
    acc_in = float(table.correct[inside].mean())
    acc_out = float(table.correct[outside].mean()) if outside.any() else float("nan")
    labels, counts = np.unique(table.label[inside], return_counts=True)
    mix = {int(label): int(count) for label, count in zip(labels, counts)}
    label_shares = _label_shares(table.label, inside)
    features = _distinguishing_features(x, inside, feature_names, n_features) if x is not None else []
    trend = trend if trend is not None else Trend((), (), float("nan"), "unknown")
    examples = _examples(table, region.positions, regions.seed, n_examples)
    verdict_text = verdict.verdict if verdict is not None else UNCHECKED
    noise_fraction = verdict.noise_fraction if verdict is not None else float("nan")
    share = region.size / len(table)
    sentence = _sentence(region_id, region.size, share, regions.split, region.mean_loss, region.loss_ratio, acc_in,
                         acc_out, label_shares, features, trend, verdict)
    return RegionDescription(region_id=region_id, split=regions.split, size=region.size, mean_loss=region.mean_loss,
                             loss_ratio=region.loss_ratio, accuracy_in=acc_in, accuracy_out=acc_out, class_mix=mix,
                             features=features, trend=trend.label, trend_slope=trend.slope, examples=examples,
                             sentence=sentence, verdict=verdict_text, noise_fraction=noise_fraction,
                             labels=label_shares, share=share)


def _label_shares(labels: np.ndarray, inside: np.ndarray) -> list[tuple[int, float, float]]:
    """(label, share inside, share outside), most over-represented inside first."""
    rows = []
    for label in np.unique(labels):
        share_in = float((labels[inside] == label).mean())
        share_out = float((labels[~inside] == label).mean()) if (~inside).any() else 0.0
        rows.append((int(label), share_in, share_out))
    return sorted(rows, key=lambda r: -(r[1] - r[2]))


def _distinguishing_features(x: np.ndarray, inside: np.ndarray, names: Sequence[str] | None,
                             top: int) -> list[tuple[str, float]]:
    values = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(values) != len(inside):
        raise InvalidArgument(f"x has {len(values)} rows but the score table has {len(inside)}")
    if names is not None and len(names) != values.shape[1]:
        raise InvalidArgument(f"{len(names)} feature names for {values.shape[1]} input features")
    if not (~inside).any():
        return []
    spread = values.std(axis=0)
    diff = (values[inside].mean(axis=0) - values[~inside].mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    order = np.argsort(-np.abs(diff), kind="stable")[:top]
    return [(names[j] if names is not None else f"input[{int(j)}]", float(diff[j])) for j in order]


def _examples(table: ScoreTable, positions: np.ndarray, seed: int, count: int) -> list[int]:
    """Half the worst members by loss, half a seeded draw of the others: what is typical and what is extreme."""
    if count <= 0 or len(positions) == 0:
        return []
    worst = positions[np.argsort(-table.loss[positions], kind="stable")[: max(1, count // 2)]]
    others = np.setdiff1d(positions, worst)
    drawn = np.random.default_rng(seed).choice(others, size=min(count - len(worst), len(others)), replace=False)
    return [int(i) for i in table.index[np.concatenate([worst, np.sort(drawn)])]]


def _sentence(region_id: str, size: int, share: float, split: str, mean_loss: float, ratio: float, acc_in: float,
              acc_out: float, labels: list[tuple[int, float, float]], features: list[tuple[str, float]],
              trend: Trend, verdict: RegionVerdict | None) -> str:
    parts = [f"{region_id}: {size} {split} samples ({share:.0%}), mean loss {mean_loss:.3g} ({ratio:.1f}x the "
             f"overall mean), accuracy {acc_in:.0%} inside vs {acc_out:.0%} outside"]
    over = [f"label {label} ({a:.0%} vs {b:.0%})" for label, a, b in labels[:2] if a > 1.5 * b and a >= 0.1]
    parts.append("over-represented: " + ", ".join(over) if over else "labels mixed like the rest")
    if features:
        parts.append("differs most in " + ", ".join(f"{name} ({d:+.1f} sd)" for name, d in features[:3]))
    if trend.label != "unknown":
        parts.append(f"{trend.label} over training")
    if verdict is not None:
        parts.append(verdict.reason)
    return "; ".join(parts)
