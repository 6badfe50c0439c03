"""Protobuf <-> domain for DiagnosticsService (the health checks), kept beside convert.py."""

from __future__ import annotations

from typing import Iterable

from onthefly.health.checks import CheckSpec
from onthefly.health.findings import Finding, HealthReport
from onthefly.runtime.errors import InvalidArgument
from onthefly.v1 import diagnostics_pb2
from onthefly.v1.diagnostics_pb2 import Finding as ProtoFinding
from onthefly.v1.diagnostics_pb2 import HealthCheckInfo as ProtoHealthCheckInfo

_PREFIX = "HEALTH_CHECK_"


def check_value(name: str) -> int:
    return diagnostics_pb2.HealthCheck.Value(_PREFIX + name.upper())


def check_names(values: Iterable[int]) -> list[str]:
    """Request enum values -> domain check names; InvalidArgument for UNSPECIFIED or unknown numbers."""
    known = {v: k.removeprefix(_PREFIX).lower() for k, v in diagnostics_pb2.HealthCheck.items()
             if v != diagnostics_pb2.HEALTH_CHECK_UNSPECIFIED}
    names = []
    for value in values:
        if value not in known:
            raise InvalidArgument(f"checks holds {value}, which is not a health check; use one of "
                                  + ", ".join(_PREFIX + n.upper() for n in known.values()) + " (or none for all)")
        names.append(known[value])
    return names


def check_info(spec: CheckSpec) -> ProtoHealthCheckInfo:
    return ProtoHealthCheckInfo(check=check_value(spec.name), name=spec.name, description=spec.description)


def finding(value: Finding) -> ProtoFinding:
    return ProtoFinding(check=check_value(value.check), severity=int(value.severity), message=value.message,
                        subject=value.subject, evidence=value.evidence)


def report_fields(report: HealthReport) -> dict:
    return {"findings": [finding(f) for f in report.findings], "held_seconds": report.held_seconds}
