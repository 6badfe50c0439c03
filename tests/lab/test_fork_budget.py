"""The ledger: sample-gradients against a limit, forward passes beside them, sub-ledgers charging parents."""

from __future__ import annotations

import threading

import pytest

from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.runtime.errors import InvalidArgument


def test_charges_count_and_a_charge_past_the_limit_spends_nothing():
    ledger = Ledger(100, "E")
    ledger.charge(60, "specialist")
    with pytest.raises(BudgetExceeded, match="40 more"):
        ledger.charge(41)
    assert ledger.spent == 60 and ledger.remaining == 40
    ledger.charge(40, "merge")
    assert ledger.summary().by_label == {"specialist": 60, "merge": 40}
    ledger.assert_spent_exactly(100)


def test_forward_passes_are_counted_separately_and_never_limited():
    ledger = Ledger(10)
    ledger.count_forward(10_000, "scoring")
    assert ledger.spent == 0 and ledger.forward_samples == 10_000
    assert ledger.summary().forward_by_label == {"scoring": 10_000}


def test_a_sub_ledger_charges_its_parent_and_respects_both_limits():
    parent = Ledger(100, "E")
    a, b = parent.sub(60, "r1"), parent.sub(60, "r2")
    a.charge(60)
    with pytest.raises(BudgetExceeded, match="E"):
        b.charge(41)  # r2 allows 60, but E has only 40 left
    b.charge(40)
    assert parent.spent == 100 and a.spent == 60 and b.spent == 40
    with pytest.raises(BudgetExceeded):
        parent.sub(1, "r3")


def test_bad_budgets_are_refused_with_a_clear_error():
    for bad in (0, -5, 2.5, True):
        with pytest.raises(InvalidArgument):
            Ledger(bad)
    with pytest.raises(InvalidArgument):
        Ledger(10).charge(-1)


def test_concurrent_charges_never_overrun_a_shared_parent():
    parent = Ledger(1000, "E")
    subs = [parent.sub(None, f"s{i}") for i in range(4)]
    refused = []

    def spend(ledger):
        for _ in range(400):
            try:
                ledger.charge(1)
            except BudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=spend, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert parent.spent == 1000 and len(refused) == 600
