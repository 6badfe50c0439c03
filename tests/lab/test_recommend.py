"""Recommendation on validation: worst slice first, never at the cost of overall accuracy, never blocked."""

from __future__ import annotations

import numpy as np
import pytest

from onthefly.lab.compare import Comparison, Row, Slice
from onthefly.lab.recommend import default_kinds, paired_gain, recommend
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument

REGION, REST = 40, 160


def _hits(accuracy: float, n: int) -> np.ndarray:
    """n samples of which the first round(accuracy * n) are correct (the models share their easy samples)."""
    return np.arange(n) < round(accuracy * n)


def _table(rows: dict, split: str = "val", region: int = REGION) -> Comparison:
    """rows: name -> (region accuracy, rest accuracy, FLOPs ratio), with per-sample results to match, or name ->
    per-sample results (region samples first)."""
    n = region + REST
    in_region = np.arange(n) < region
    slices = [Slice("overall", "overall", np.ones(n, bool)),
              Slice("region r1", "region", in_region),
              Slice("rest", "rest", ~in_region),
              Slice("class 0", "class", np.arange(n) < 5)]
    out, correct = [], {}
    for name, spec in rows.items():
        if isinstance(spec, np.ndarray):  # per-sample results given as they are, at one model's cost
            correct[name], flops = spec, 1.0
        else:
            acc_region, acc_rest, flops = spec
            correct[name] = np.r_[_hits(acc_region, region), _hits(acc_rest, REST)]
        overall = float(correct[name].mean())
        acc = {"overall": overall, "region r1": float(correct[name][:region].mean()),
               "rest": float(correct[name][region:].mean()), "class 0": 0.0}
        out.append(Row(name, acc, overall, "region r1", min(acc["region r1"], acc["rest"]), flops, flops, 100, 0,
                       name))
    return Comparison(split, slices, out, ("region", "rest", "class"), correct=correct)


def test_picks_the_best_worst_slice_and_says_why():
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-hard": (0.60, 0.95, 1.0),
                    "fork-route": (0.85, 0.95, 1.35)})
    chosen = recommend(table)
    assert chosen.name == "fork-route"
    assert "region r1" in chosen.reason and "+35.0 points" in chosen.reason and chosen.reason.endswith(".")
    assert "worst slice" in chosen.excluded["continue"]


def test_a_tie_on_the_worst_slice_goes_to_the_cheaper_model():
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-region": (0.845, 0.95, 1.0),
                    "fork-route": (0.85, 0.95, 1.35)})
    assert recommend(table).name == "upweight-region"


def test_never_buys_the_worst_slice_with_overall_accuracy():
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-hard": (0.90, 0.80, 1.0)})  # overall 82% vs 86%
    chosen = recommend(table)
    assert chosen.name == "continue" and "below continue" in chosen.excluded["upweight-hard"]


def test_blocked_resolutions_are_never_recommended():
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-hard": (0.90, 0.95, 1.0)})
    chosen = recommend(table, blocked={"upweight-hard": "its hard set is mostly label noise"})
    assert chosen.name == "continue" and "label noise" in chosen.excluded["upweight-hard"]
    with pytest.raises(FailedPrecondition, match="blocked"):
        recommend(table, blocked={"continue": "x", "upweight-hard": "y"})


def test_refuses_to_choose_on_the_test_split():
    with pytest.raises(FailedPrecondition, match="validation"):
        recommend(_table({"continue": (0.5, 0.9, 1.0)}, split="test"))


def test_a_near_tie_at_the_same_cost_goes_to_the_better_worst_slice_not_the_better_overall():
    # adapters: region 70%, overall 91.6%; (b'): region 71.5%, overall 90.3%. Both within the tie, same cost:
    # the worst slice is the objective, overall accuracy only a guard, so (b') wins.
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-region": (0.715, 0.95, 1.0),
                    "adapters": (0.70, 0.97, 1.0)}, region=80)
    chosen = recommend(table)
    assert chosen.name == "upweight-region"
    assert "near on the worst slice, but lower" in chosen.excluded["adapters"]


def test_a_point_of_overall_validation_accuracy_is_noise_not_a_veto():
    # (b') lifts the region by 20 points at 1.2 points of overall validation accuracy (two or three samples of a
    # validation split): within the tolerance, so it is chosen; 4 points down is still refused (test above).
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-region": (0.70, 0.885, 1.0)})
    assert recommend(table).name == "upweight-region"
    assert recommend(table, overall_tolerance=0.005).name == "continue"


def test_a_gain_within_the_paired_uncertainty_of_a_small_validation_region_does_not_displace_continuing():
    # A 20-sample region of a noisy validation split: adapters get 4 of continue's misses right and 2 of its hits
    # wrong, +10 points on the region, which six coin flips give by chance. Continuing stays, and says why.
    base = np.r_[_hits(0.5, 20), _hits(0.95, REST)]
    noisy = base.copy()
    noisy[[8, 9]] = False
    noisy[[10, 11, 12, 13]] = True
    table = _table({"continue": base, "adapters": noisy}, region=20)
    assert table.row("adapters").accuracy["region r1"] == 0.6
    chosen = recommend(table)
    assert chosen.name == "continue"
    assert "paired uncertainty" in chosen.reason and "adapters" in chosen.reason and chosen.reason.endswith(".")
    assert "paired uncertainty" in chosen.excluded["adapters"]
    # Without the paired test (z = 0) the same table picks adapters: the test is what keeps continuing.
    assert recommend(table, z=0).name == "adapters"
    # The same +10 points where adapters only add hits (nothing lost) is beyond chance: the pairing matters.
    assert recommend(_table({"continue": base, "adapters": base | (np.arange(base.size) < 12)}, region=20)).name \
        == "adapters"


def test_class_slices_decide_only_when_the_classes_are_imbalanced():
    # Balanced classes: the worst class does not decide (class slices of ~25 samples picked noise on digits-shift).
    table = _table({"continue": (0.50, 0.95, 1.0)})
    assert default_kinds(table) == ("region", "rest")
    n = table.slices[0].size
    rare = np.arange(n) >= n - 10
    slices = [s for s in table.slices if s.kind != "class"] + [Slice("class 0", "class", ~rare),
                                                                Slice("class 1", "class", rare)]
    imbalanced = Comparison("val", slices, table.rows, table.worst_kinds, correct=table.correct)
    assert default_kinds(imbalanced) == ("region", "rest", "class")


def test_a_gain_beyond_the_paired_uncertainty_is_recommended_and_the_reason_says_so():
    table = _table({"continue": (0.50, 0.95, 1.0), "upweight-region": (0.80, 0.95, 1.0)})
    paired = paired_gain(table, table.row("upweight-region"), table.row("continue"))
    assert paired.gain > 3 * paired.se > 0  # 12 of 40 region samples more: far beyond chance
    chosen = recommend(table)
    assert chosen.name == "upweight-region" and "beyond the split's paired uncertainty" in chosen.reason


def test_the_paired_uncertainty_needs_per_sample_results():
    table = _table({"continue": (0.50, 0.95, 1.0), "adapters": (0.90, 0.95, 1.0)})
    table.correct.clear()
    with pytest.raises(InvalidArgument, match="per-sample results"):
        recommend(table)


def test_where_labels_are_flagged_as_noise_a_gain_needs_two_standard_errors():
    # Adapters get 5 of continue's 20 region misses right and lose 1 of its hits: +10 points at ~1.7 standard
    # errors. Enough on clean labels; where the fork flagged label noise (validation labels are as noisy, and
    # fitting the noise agrees with them) it is not, and continuing stays.
    base = np.r_[_hits(0.5, REGION), _hits(0.95, REST)]
    fits_noise = base.copy()
    fits_noise[20:25] = True
    fits_noise[0] = False
    table = _table({"continue": base, "adapters": fits_noise})
    paired = paired_gain(table, table.row("adapters"), table.row("continue"))
    assert 1.0 < paired.gain / paired.se < 2.0
    assert recommend(table).name == "adapters"
    chosen = recommend(table, label_noise=True)
    assert chosen.name == "continue" and "labels flagged as noisy" in chosen.excluded["adapters"]
