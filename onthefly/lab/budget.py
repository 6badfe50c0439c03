"""A ledger of compute, counted in sample-gradients, with a limit that cannot be overrun.

One sample-gradient = one sample's forward + backward through a generalist-sized model (the protocol's
unit). Gate and adapter steps are charged as full sample-gradients (conservative). Forward-only passes
(scoring, teacher logits, BatchNorm recalibration, evaluation) are counted separately and never limited:
they are reported beside the sample-gradients, not mixed into them.

A charge that would pass the limit raises ``BudgetExceeded`` *before* anything is spent, so a caller
checks, then trains. A sub-ledger (``ledger.sub(limit, label)``) has its own limit and also charges its
parent, which is how one resolution's extra compute E is split between specialists and a merge phase
while the resolution's own total stays exact. Charges are thread-safe (specialists may train on worker
threads).
"""

from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass, field

from onthefly.runtime.errors import InvalidArgument, ResourceExhausted


class BudgetExceeded(ResourceExhausted):
    """A charge would spend more sample-gradients than the ledger allows (maps to RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class LedgerSummary:
    """What a ledger spent: sample-gradients against its limit, forward-only samples, per label."""

    name: str
    limit: int | None
    sample_gradients: int
    forward_samples: int
    by_label: dict[str, int] = field(default_factory=dict)
    forward_by_label: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "limit": self.limit, "sample_gradients": self.sample_gradients,
                "forward_samples": self.forward_samples, "by_label": dict(self.by_label),
                "forward_by_label": dict(self.forward_by_label)}


class Ledger:
    """Counts sample-gradients against ``limit`` (None: unlimited) and forward-only samples beside them."""

    def __init__(self, limit: int | None = None, name: str = "ledger", parent: "Ledger | None" = None) -> None:
        if limit is not None:
            limit = _check_count(limit, "the budget", allow_zero=False)
        self.name = name
        self.limit = limit
        self.parent = parent
        self._spent = 0
        self._forward = 0
        self._by_label: dict[str, int] = {}
        self._forward_by_label: dict[str, int] = {}
        # One lock for a whole family of ledgers: a charge checks every limit up the chain, then spends,
        # atomically, so two specialists sharing a parent can never overrun it together.
        self._lock: threading.RLock = parent._lock if parent is not None else threading.RLock()

    # -- reading ----------------------------------------------------------------------------------
    @property
    def spent(self) -> int:
        """Sample-gradients charged so far (including those of sub-ledgers)."""
        return self._spent

    @property
    def forward_samples(self) -> int:
        """Forward-only samples counted so far (including those of sub-ledgers)."""
        return self._forward

    @property
    def remaining(self) -> int | None:
        """Sample-gradients still allowed here and by every parent; None when nothing limits them."""
        with self._lock:
            return self._remaining()

    def _remaining(self) -> int | None:
        own = None if self.limit is None else self.limit - self._spent
        up = self.parent._remaining() if self.parent is not None else None
        if own is None:
            return up
        return own if up is None else min(own, up)

    def summary(self) -> LedgerSummary:
        with self._lock:
            return LedgerSummary(self.name, self.limit, self._spent, self._forward, dict(self._by_label),
                                 dict(self._forward_by_label))

    # -- charging ---------------------------------------------------------------------------------
    def require(self, sample_gradients: int) -> None:
        """Raise BudgetExceeded if ``sample_gradients`` more would pass a limit; spend nothing."""
        sample_gradients = _check_count(sample_gradients, "a charge")
        with self._lock:
            self._require(sample_gradients)

    def _require(self, n: int) -> None:
        remaining = self._remaining()
        if remaining is not None and n > remaining:
            raise BudgetExceeded(
                f"'{self.name}' may spend {remaining} more sample-gradient(s) but {n} were asked for "
                f"(limit {self._limit_text()}); give a larger budget or train on fewer samples")

    def _limit_text(self) -> str:
        parts = []
        ledger: Ledger | None = self
        while ledger is not None:
            if ledger.limit is not None:
                parts.append(f"{ledger.name}: {ledger._spent}/{ledger.limit} spent")
            ledger = ledger.parent
        return "; ".join(parts) or "none"

    def charge(self, sample_gradients: int, label: str = "train") -> None:
        """Spend ``sample_gradients`` here and in every parent, or raise BudgetExceeded and spend nothing."""
        sample_gradients = _check_count(sample_gradients, "a charge")
        with self._lock:
            self._require(sample_gradients)
            ledger: Ledger | None = self
            while ledger is not None:
                ledger._spent += sample_gradients
                ledger._by_label[label] = ledger._by_label.get(label, 0) + sample_gradients
                ledger = ledger.parent

    def count_forward(self, samples: int, label: str = "forward") -> None:
        """Record ``samples`` forward-only passes (never limited) here and in every parent."""
        samples = _check_count(samples, "a forward count")
        with self._lock:
            ledger: Ledger | None = self
            while ledger is not None:
                ledger._forward += samples
                ledger._forward_by_label[label] = ledger._forward_by_label.get(label, 0) + samples
                ledger = ledger.parent

    def sub(self, limit: int | None, name: str) -> "Ledger":
        """A child ledger with its own limit whose charges also count here (and against this limit)."""
        if limit is not None:
            with self._lock:
                remaining = self._remaining()
            if remaining is not None and limit > remaining:
                raise BudgetExceeded(f"'{name}' asks for {limit} sample-gradient(s) but '{self.name}' has only "
                                     f"{remaining} left; give it a budget of at most {remaining}")
        return Ledger(limit, name, parent=self)

    def set_limit(self, limit: int | None) -> None:
        """Change the limit (None: unlimited); refused below what was already spent here."""
        if limit is not None:
            limit = _check_count(limit, "the budget", allow_zero=False)
        with self._lock:
            if limit is not None and limit < self._spent:
                raise InvalidArgument(f"'{self.name}' already spent {self._spent} sample-gradient(s); a limit of "
                                      f"{limit} would be below that: give at least {self._spent}")
            self.limit = limit

    def assert_spent_exactly(self, expected: int) -> None:
        """Raise AssertionError unless exactly ``expected`` sample-gradients were charged (matched compute)."""
        if self._spent != expected:
            raise AssertionError(f"'{self.name}' spent {self._spent} sample-gradient(s), not the {expected} that "
                                 "matched compute requires")


def _check_count(value: int, what: str, allow_zero: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{what} must be a whole number of samples, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(f"{what} must be {'at least 0' if allow_zero else 'positive'}, got {value}")
    return int(value)
