"""What a health check reports: findings with a severity, a message a person can act on, and numbers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """How much a finding matters (same numbering as onthefly.v1.FindingSeverity)."""

    INFO = 1
    WARNING = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    message: str
    subject: str = ""
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The findings of one RunHealthCheck command, in check order, and how long it held the loop."""

    findings: list[Finding]
    step: int
    held_seconds: float

    def worst(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.INFO)

    def counts(self) -> dict[Severity, int]:
        out = {s: 0 for s in Severity}
        for f in self.findings:
            out[f.severity] += 1
        return out


class Findings:
    """Collects the findings of one check; ``info``/``warning``/``error`` append and return nothing."""

    def __init__(self, check: str) -> None:
        self.check = check
        self.items: list[Finding] = []

    def add(self, severity: Severity, message: str, subject: str = "", **evidence: float) -> None:
        self.items.append(Finding(self.check, severity, message, subject,
                                  {k: float(v) for k, v in evidence.items()}))

    def info(self, message: str, subject: str = "", **evidence: float) -> None:
        self.add(Severity.INFO, message, subject, **evidence)

    def warning(self, message: str, subject: str = "", **evidence: float) -> None:
        self.add(Severity.WARNING, message, subject, **evidence)

    def error(self, message: str, subject: str = "", **evidence: float) -> None:
        self.add(Severity.ERROR, message, subject, **evidence)

    @property
    def problems(self) -> int:
        return sum(1 for f in self.items if f.severity > Severity.INFO)
