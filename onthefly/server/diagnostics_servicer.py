"""DiagnosticsService: parse, submit one RunHealthCheck command, wait for its report, answer.

Importing this module registers the service (and the run's HealthMonitor) for every run server built.
"""

from __future__ import annotations

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.health.checks import CHECKS
from onthefly.health.command import RunHealthCheck
from onthefly.health.monitor import install
from onthefly.runtime.run import Run
from onthefly.server import convert, diagnostics_convert
from onthefly.server.control_servicer import submit_and_wait
from onthefly.server.host import register_extension
from onthefly.server.status import domain_errors
from onthefly.v1 import diagnostics_pb2, diagnostics_pb2_grpc

SERVICE_NAME = diagnostics_pb2.DESCRIPTOR.services_by_name["DiagnosticsService"].full_name


class DiagnosticsServicer(diagnostics_pb2_grpc.DiagnosticsServiceServicer):
    def __init__(self, run: Run) -> None:
        self._run = run

    def ListHealthChecks(self, request, context: grpc.ServicerContext):
        return diagnostics_pb2.ListHealthChecksResponse(
            checks=[diagnostics_convert.check_info(spec) for spec in CHECKS.values()])

    def RunHealthCheck(self, request, context: grpc.ServicerContext):
        with domain_errors(context):
            names = diagnostics_convert.check_names(request.checks)
        pending = submit_and_wait(self._run, RunHealthCheck(names, request.batches), context)
        response = diagnostics_pb2.RunHealthCheckResponse(receipt=convert.receipt(pending.wait(0)))
        if pending.result is not None:
            fields = diagnostics_convert.report_fields(pending.result)
            response.findings.extend(fields["findings"])
            response.held_seconds = fields["held_seconds"]
        return response


def add_to_server(server: grpc.Server, run: Run) -> list[str]:
    """Extension entry point: watch the run for the checks and serve DiagnosticsService."""
    install(run)
    diagnostics_pb2_grpc.add_DiagnosticsServiceServicer_to_server(DiagnosticsServicer(run), server)
    return [SERVICE_NAME]


register_extension(add_to_server)
