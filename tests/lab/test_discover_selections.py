"""Selections: loss bands, per-class errors and forgotten samples name base indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.scoring import score
from onthefly.lab.selections import class_errors, forgotten, loss_band, per_class_error
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument


@pytest.fixture(scope="module")
def table():
    torch.manual_seed(0)
    data = Subset(boring_dataset(300, seed=0), list(range(100, 300)))
    return score(BoringModel(), data)


def test_loss_band_is_the_quantile_band(table):
    top = loss_band(table, 0.8, 1.0)
    assert len(top) == pytest.approx(0.2 * len(table), abs=1)
    assert table.loss[table.positions(top)].min() >= np.quantile(table.loss, 0.8)
    assert top.min() >= 100  # base indices, not table rows
    with pytest.raises(InvalidArgument, match="0 <= low < high <= 1"):
        loss_band(table, 0.5, 0.5)


def test_class_errors_and_per_class_error(table):
    rows = per_class_error(table)
    assert sum(r.samples for r in rows) == len(table)
    assert [r.error_rate for r in rows] == sorted((r.error_rate for r in rows), reverse=True)
    worst = rows[0]
    wrong = class_errors(table, worst.label)
    assert len(wrong) == worst.errors
    assert np.all(table.label[table.positions(wrong)] == worst.label)
    assert not table.correct[table.positions(wrong)].any()
    with pytest.raises(InvalidArgument, match="no sample of label 7"):
        class_errors(table, 7)


def test_forgotten_means_learned_then_lost():
    indices = np.array([10, 11, 12, 13])
    epochs = np.array([0, 1, 2])
    losses = np.array([[0.1, 0.9, 0.1],       # learned, forgotten, relearned: one event
                       [0.9, 0.1, 0.1],       # learned late, kept
                       [0.1, np.nan, 0.9],    # learned, unseen, forgotten: one event
                       [0.9, 0.9, 0.9]])      # never learned
    chosen, events = forgotten(indices, epochs, losses, threshold=0.5)
    assert chosen.tolist() == [10, 12] and events.tolist() == [1, 1]
    chosen, _ = forgotten(indices, epochs, losses)  # median rule
    assert 13 not in chosen.tolist()
    with pytest.raises(FailedPrecondition, match="at least 2 epochs"):
        forgotten(indices, epochs[:1], losses[:, :1])
    with pytest.raises(InvalidArgument, match="samples x epochs"):
        forgotten(indices, epochs, losses[:2])
