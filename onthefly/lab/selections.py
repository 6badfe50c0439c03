"""Selections: rules that pick base indices from a score table or the per-sample history.

- ``loss_band``: samples whose scored loss lies between two quantiles (e.g. the top 20%: 0.8-1.0);
- ``class_errors`` / ``per_class_error``: the misclassified samples of a label, and every label's error;
- ``forgotten``: samples learned in some epoch and not learned in a later one (data-map style
  forgetting events), from the history's per-epoch loss matrix.

Each returns base indices (int64, ascending) so a selection names the same samples in every view, and
becomes a named slice through the lab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onthefly.lab.scoring import ScoreTable
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument


@dataclass(frozen=True)
class ClassError:
    """One label's row of the per-class error table."""

    label: int
    samples: int
    errors: int
    error_rate: float
    mean_loss: float


def loss_band(table: ScoreTable, low_quantile: float, high_quantile: float) -> np.ndarray:
    """Base indices whose loss is within [quantile(low), quantile(high)] of the table's losses."""
    if not 0.0 <= low_quantile < high_quantile <= 1.0:
        raise InvalidArgument(f"a loss band needs 0 <= low < high <= 1, got [{low_quantile}, {high_quantile}]")
    if len(table) == 0:
        return np.zeros(0, np.int64)
    low, high = np.quantile(table.loss, [low_quantile, high_quantile])
    return np.sort(table.index[(table.loss >= low) & (table.loss <= high)])


def class_errors(table: ScoreTable, label: int) -> np.ndarray:
    """Base indices of the misclassified samples of ``label``."""
    labels = np.unique(table.label)
    if int(label) not in set(labels.tolist()):
        raise InvalidArgument(f"no sample of label {label} in the {table.split} scoring pass; labels are "
                              f"{', '.join(map(str, labels.tolist()))}")
    return np.sort(table.index[(table.label == int(label)) & ~table.correct])


def per_class_error(table: ScoreTable) -> list[ClassError]:
    """Every label's sample count, errors, error rate and mean loss, worst error rate first."""
    rows = []
    for label in np.unique(table.label):
        members = table.label == label
        errors = int((~table.correct[members]).sum())
        rows.append(ClassError(int(label), int(members.sum()), errors, errors / int(members.sum()),
                               float(table.loss[members].mean())))
    return sorted(rows, key=lambda r: (-r.error_rate, r.label))


def forgotten(indices: np.ndarray, epochs: np.ndarray, losses: np.ndarray,
              threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(base indices forgotten at least once, their forgetting-event counts).

    ``indices``, ``epochs``, ``losses`` are the history's per-epoch view (``SampleHistory.epoch_losses``):
    a sample is *learned* in an epoch when its mean loss there is under ``threshold`` (default: that
    epoch's median loss, so the rule adapts to the loss's scale); a forgetting event is an epoch where a
    sample once learned is not learned. Epochs where a sample was not seen (NaN) keep its state.
    """
    losses = np.asarray(losses, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64)
    if losses.shape != (len(indices), len(epochs)):
        raise InvalidArgument(f"losses must be [samples x epochs] = [{len(indices)} x {len(epochs)}], "
                              f"got {list(losses.shape)}")
    if threshold is not None and not threshold > 0:
        raise InvalidArgument(f"the learned-loss threshold must be > 0, got {threshold}")
    if len(epochs) < 2:
        raise FailedPrecondition(f"forgetting needs at least 2 epochs of train history; {len(epochs)} recorded")
    seen = np.isfinite(losses)
    if threshold is None:
        cut = np.array([np.median(losses[seen[:, e], e]) if seen[:, e].any() else np.inf
                        for e in range(len(epochs))])
    else:
        cut = np.full(len(epochs), float(threshold))
    learned = seen & (np.where(seen, losses, np.inf) < cut[None, :])
    ever = np.zeros(len(indices), bool)
    events = np.zeros(len(indices), np.int64)
    for e in range(len(epochs)):
        events += ever & seen[:, e] & ~learned[:, e]
        ever |= learned[:, e]
    chosen = events > 0
    order = np.argsort(indices[chosen], kind="stable")
    return indices[chosen][order], events[chosen][order]
