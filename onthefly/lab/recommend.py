"""Recommend one resolution, chosen on a validation split the training never saw, with a one-sentence reason.

The rule, in order:
1. Drop what must never be recommended: resolutions blocked at build time (upweighting a hard set that lies
   mostly in regions flagged as label noise; region resolutions are never built on such regions).
2. Keep only resolutions whose overall validation accuracy is at most ``overall_tolerance`` below
   continuing the generalist ("continue", the safe default): a resolution must not buy its worst slice
   with the average user's accuracy.
3. An alternative to continuing must beat it on the worst validation slice (below) by more than the split's own
   paired uncertainty: ``z`` standard errors of the gain, from a bootstrap that resamples the same validation
   samples for both models (so what they share cancels); two (``Z_NOISE``) when the fork flagged a region as
   label noise (``label_noise``). A validation split of a few hundred samples lets one of eight alternatives
   look several points better by chance, and noisy validation labels reward fitting the noise; such an
   alternative is not chosen over the safe default.
4. Among those left, take the best worst-slice validation accuracy, over the discovered regions and the rest
   (without a region, the rest is everything: overall accuracy decides), and over each class too when the
   classes are imbalanced (``default_kinds``). Validation slices are small (a region or a
   class may hold twenty samples, where one sample is five points), so each slice's accuracy is shrunk
   toward the resolution's overall accuracy as if ``prior`` more samples had scored at the overall rate
   (``(correct + prior * overall) / (n + prior)``): a big slice keeps its own figure, a tiny one cannot
   decide alone. Resolutions within ``tie`` of the best count as tied on the worst slice, and a tie goes to the
   cheaper inference (FLOPs): an equally good single model beats a routed one. Among the equally cheap, the
   higher (shrunk) worst slice wins, then the higher overall accuracy, then the order of the menu (simplest
   first). Overall accuracy is already guarded by rule 2; breaking the tie by it instead let a resolution that
   trades worst slice for overall accuracy win (adapters on digits-shift, continuing on the mixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from onthefly.lab.compare import Comparison, Row
from onthefly.lab.resolutions import CONTINUE, DESCRIPTIONS, MENU
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument

# Chosen on development seeds 100-119 of the four benchmarks (never the reported seeds 200-214, see
# benchmarks/lab_resolutions.py). Overall tolerance 2.5 points of validation accuracy: a validation split of a
# few hundred samples moves by a point on two or three samples, and with half a point (b') and fork + route
# were excluded on noise in 4 of 8 digits-shift seeds (112-119), leaving continue or adapters (worst group 2.6
# points under the seed's best single model over seeds 100-119, against 0.3 with 2.5; overall on test -0.2
# against (a), inside the 1-point target; imbalanced's (b), 8 points down, stays excluded). Worst slices within
# two points count as a tie (for the cost tie-break only). A prior of 5 pseudo-samples: with 20, a region's own
# figure was pulled so far toward overall accuracy that resolutions trading the region for overall accuracy
# (adapters) won on digits-shift (seeds 100-119: worst group -1.1, 13/20 seeds within target, against -0.3 and
# 14/20 with 5). Before these three changes (0.5 points, prior 20, ties to overall accuracy) the same seeds gave
# digits-shift -4.4 (11/20) and mixture -2.6 (10/20); now -0.3 (14/20) and -2.2 (9/20).
OVERALL_TOLERANCE = 0.025
TIE = 0.02
PRIOR = 5  # pseudo-samples at the overall rate added to each slice before taking the worst
# The slices a recommendation must lift: the discovered regions and the rest. Per-class accuracy is shown in
# the comparison but does not decide: on validation a class holds ~25 samples, and choosing by the worst
# class picked noise over the region in 6 of 8 development seeds of digits-shift (seeds 100-107).
KINDS = ("region", "rest")
# Where classes are imbalanced the rare class is the group at risk, and no region can stand for it (the class is
# what is predicted), so class slices decide too. On development seeds 100-119 this moved imbalanced's
# recommendation from worst group -21.0 to -11.2 points against the seed's best of (a)/(b)/(b') (overall -0.9
# against (a), was +0.0; balance-classes chosen in 12/20 seeds) and changed nothing on the three balanced benchmarks.
CLASS_IMBALANCE = 2.0
COST_TIE = 1.05  # FLOPs ratios within 5% are the same cost
# Standard errors of the paired worst-slice gain an alternative must clear to displace continuing. Development
# seeds 100-119: digits-shift +0.1 worst-group points against the seed's best of (a)/(b)/(b') (without the test
# -0.3; z = 1.5: -0.9, z = 2: -2.3), mixture -3.1 (without -2.2; z = 0.5: -2.9), 14/20 and 9/20 seeds within both
# targets either way; digits-noise recommends continue in 20/20 seeds with or without it. Those seeds hold no
# failure like reported seed 204's (adapters chosen on a noisy validation split): the test is what a person would
# ask for ("better than chance on this split?"), kept at one standard error because more costs the regimes.
Z = 1.0
# Where the fork flagged a region as label noise, the validation split (carved from the same labels) is noisy too,
# and a resolution that fits the noise gains agreement with it: not chance, so one standard error does not guard
# it. Reported seed 204 of digits-noise did exactly that (adapters +5.3 worst-slice points on validation at 1.6
# standard errors, -21 points on the clean test), so such runs ask for two. Neutral on development seeds 100-119
# (the three with a flagged region on imbalanced: one seed moves from balance-classes to continue); figures on
# fresh seeds in benchmarks/lab_resolutions.py.
Z_NOISE = 2.0
ROUNDS = 400  # bootstrap resamples of the validation split (fixed seed: the same table gives the same choice)


@dataclass(frozen=True)
class Recommendation:
    """The chosen resolution, why (one sentence), and why each other one was not chosen."""

    name: str
    reason: str
    split: str
    worst_accuracy: float
    overall: float
    excluded: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason, "split": self.split,
                "worst_accuracy": self.worst_accuracy, "overall": self.overall, "excluded": dict(self.excluded)}


def default_kinds(validation: Comparison) -> tuple[str, ...]:
    """The slice kinds whose worst decides: the regions and the rest, plus each class when the split's classes
    are imbalanced (the largest at least ``CLASS_IMBALANCE`` times the smallest)."""
    sizes = [s.size for s in validation.slices if s.kind == "class" and s.size > 0]
    if sizes and max(sizes) >= CLASS_IMBALANCE * min(sizes):
        return KINDS + ("class",)
    return KINDS


def shrunk_worst(validation: Comparison, row: Row, prior: float = PRIOR, kinds: Sequence[str] = KINDS,
                 min_size: int = 1) -> tuple[float, str]:
    """The row's worst slice of ``kinds`` after shrinking each toward the row's overall accuracy."""
    worst = (row.overall, "overall")
    for s in validation.slices:
        n = s.size
        if s.kind not in kinds or n < min_size:
            continue
        value = (row.accuracy[s.name] * n + prior * row.overall) / (n + prior)
        worst = min(worst, (value, s.name))
    return worst


@dataclass(frozen=True)
class PairedGain:
    """One alternative's (shrunk) worst-slice gain over the baseline on the split, with its bootstrap uncertainty."""

    gain: float
    se: float  # standard deviation of the gain over the resamples


def paired_gain(validation: Comparison, row: Row, base: Row, prior: float = PRIOR, kinds: Sequence[str] = KINDS,
                rounds: int = ROUNDS, seed: int = 0) -> PairedGain:
    """``row``'s worst-slice gain over ``base`` and its bootstrap uncertainty: each round resamples the split's
    samples with replacement, the same samples for both models."""
    missing = [name for name in (row.name, base.name) if name not in validation.correct]
    if missing:
        raise InvalidArgument(f"the comparison holds no per-sample results for {', '.join(missing)}; build it with "
                              "onthefly.lab.compare.compare, which keeps them")
    a = np.asarray(validation.correct[row.name], dtype=bool)
    b = np.asarray(validation.correct[base.name], dtype=bool)
    gain = shrunk_worst(validation, row, prior, kinds)[0] - shrunk_worst(validation, base, prior, kinds)[0]
    n = a.size
    masks = [np.asarray(s.mask, dtype=bool) for s in validation.slices if s.kind in kinds and s.size >= 1]
    if b.size != n or any(m.size != n for m in masks):
        raise InvalidArgument(f"per-sample results and slices of the {validation.split} split disagree on its size")
    if n < 2:
        return PairedGain(gain, 0.0)
    rng = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, min(rounds, 4_000_000 // n))  # bounded memory for large splits
    for start in range(0, rounds, chunk):
        draw = rng.integers(0, n, size=(min(chunk, rounds - start), n))
        diffs.append(_resampled_worst(a[draw], masks, draw, prior) - _resampled_worst(b[draw], masks, draw, prior))
    return PairedGain(gain, float(np.concatenate(diffs).std(ddof=1)))


def _resampled_worst(hits: np.ndarray, masks: list[np.ndarray], draw: np.ndarray, prior: float) -> np.ndarray:
    """Per resample (row of ``draw``), the worst slice after shrinking toward that resample's overall accuracy."""
    overall = hits.mean(axis=1)
    worst = overall.copy()
    for mask in masks:
        inside = mask[draw]
        count = inside.sum(axis=1)
        correct = (inside & hits).sum(axis=1)
        value = np.where(count + prior > 0, (correct + prior * overall) / np.maximum(count + prior, 1e-12), overall)
        worst = np.minimum(worst, value)
    return worst


def recommend(validation: Comparison, *, blocked: dict[str, str] | None = None, baseline: str = CONTINUE,
              overall_tolerance: float = OVERALL_TOLERANCE, tie: float = TIE, prior: float = PRIOR,
              kinds: Sequence[str] | None = None, z: float = Z, label_noise: bool = False) -> Recommendation:
    """Pick a resolution from a comparison on the validation split (see the module docstring)."""
    if validation.split == "test":
        raise FailedPrecondition("recommend on a validation split, not the test split: choosing on test makes the "
                                 "test figures optimistic")
    kinds = default_kinds(validation) if kinds is None else tuple(kinds)
    if label_noise and z > 0:
        z = max(z, Z_NOISE)
    blocked = dict(blocked or {})
    excluded = {name: f"not recommended: {why}" for name, why in blocked.items()}
    rows = [r for r in validation.rows if r.name not in blocked]
    if not rows:
        raise FailedPrecondition("no resolution can be recommended: every one was blocked")
    base = next((r for r in rows if r.name == baseline), None)
    floor = base.overall - overall_tolerance if base is not None else -1.0
    eligible = []
    for r in rows:
        if r.overall < floor:
            excluded[r.name] = (f"overall validation accuracy {r.overall:.1%} is more than "
                                f"{overall_tolerance * 100:.1f} point(s) below {baseline}'s {base.overall:.1%}")
        else:
            eligible.append(r)
    robust = {r.name: shrunk_worst(validation, r, prior, kinds)[0] for r in rows}
    shown = {r.name: shrunk_worst(validation, r, 0, kinds) for r in rows}  # as measured, for the reasons
    doubtful: dict[str, tuple[float, float]] = {}  # beat the baseline by less than the paired uncertainty
    if base is not None and z > 0:
        for r in [r for r in eligible if r is not base]:
            paired = paired_gain(validation, r, base, prior, kinds)
            gain, se = paired.gain, paired.se
            if not gain > z * se:
                doubtful[r.name] = (gain, se)
                excluded[r.name] = (f"its worst-slice gain over {baseline} ({gain * 100:+.1f} points) is within the "
                                    f"{validation.split} split's paired uncertainty (±{z * se * 100:.1f}, bootstrap, "
                                    f"{z:g} standard error(s){', labels flagged as noisy' if label_noise else ''})")
        eligible = [r for r in eligible if r.name not in doubtful]
    top = max(robust[r.name] for r in eligible)
    tied = [r for r in eligible if robust[r.name] >= top - tie]
    cheapest = min(r.flops_ratio for r in tied)
    tied_cost = [r for r in tied if r.flops_ratio <= cheapest * COST_TIE]
    order = {name: i for i, name in enumerate(MENU)}
    chosen = max(tied_cost, key=lambda r: (robust[r.name], r.overall, -order.get(r.name, len(order))))
    for r in eligible:
        if r is chosen:
            continue
        if robust[r.name] < top - tie:
            excluded[r.name] = (f"worst slice {shown[r.name][0]:.1%} ({shown[r.name][1]}) against "
                                f"{shown[chosen.name][0]:.1%}")
        elif r.flops_ratio > cheapest * COST_TIE:
            excluded[r.name] = f"as good on the worst slice but {r.flops_ratio:.2f}x the inference cost"
        elif robust[r.name] < robust[chosen.name]:
            excluded[r.name] = (f"as cheap and near on the worst slice, but lower: {shown[r.name][0]:.1%} "
                                f"({shown[r.name][1]}) against {shown[chosen.name][0]:.1%}")
        else:
            excluded[r.name] = f"tied on the worst slice, lower overall accuracy ({r.overall:.1%})"
    return Recommendation(chosen.name, _reason(chosen, base, baseline, tied, validation.split, shown, doubtful, z),
                          validation.split, shown[chosen.name][0], chosen.overall, excluded)


def _reason(chosen: Row, base: Row | None, baseline: str, tied: Sequence[Row], split: str,
            shown: dict[str, tuple[float, str]], doubtful: dict[str, tuple[float, float]], z: float) -> str:
    what = DESCRIPTIONS.get(chosen.name, chosen.name)
    worst, worst_slice = shown[chosen.name]
    if base is None or chosen.name == baseline:
        if doubtful and len(tied) <= 1:
            name, (gain, se) = max(doubtful.items(), key=lambda item: item[1][0])
            return (f"{what}: no alternative beat it on the worst {split} slice ({worst:.1%}, {worst_slice}) by more "
                    f"than the split's paired uncertainty (best: {name}, {gain * 100:+.1f} ± {z * se * 100:.1f} "
                    "points).")
        if len(tied) > 1:
            return (f"{what}: nothing beat it by more than a point on the worst {split} slice "
                    f"({worst:.1%}, {worst_slice}) at no extra inference cost.")
        return (f"{what}: no other resolution kept overall {split} accuracy while lifting the worst slice "
                f"({worst:.1%}, {worst_slice}).")
    gain = (worst - shown[base.name][0]) * 100
    cost = "" if chosen.flops_ratio <= 1.05 else f", at {chosen.flops_ratio:.2f}x inference FLOPs"
    beyond = " (beyond the split's paired uncertainty)" if z > 0 else ""
    return (f"{what}: its worst {split} slice ({worst_slice}) reaches {worst:.1%}, "
            f"{gain:+.1f} points over continuing{beyond}, with overall accuracy {chosen.overall:.1%} against "
            f"{base.overall:.1%}{cost}.")
