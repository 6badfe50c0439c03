"""Mid-run health checks (numerics, gradients, activations, throughput, determinism, configuration) and
the opt-in NumericsGuard. Domain code: no protobuf here; the DiagnosticsService servicer adapts it."""

from onthefly.health.checks import CHECKS
from onthefly.health.command import RunHealthCheck
from onthefly.health.findings import Finding, HealthReport, Severity
from onthefly.health.guard import NumericsGuard
from onthefly.health.monitor import HealthMonitor, install

__all__ = ["CHECKS", "Finding", "HealthMonitor", "HealthReport", "NumericsGuard", "RunHealthCheck", "Severity",
           "install"]
