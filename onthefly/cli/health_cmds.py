"""`onthefly health [CHECK ...]`: ask a running trainer whether its training is healthy.

Prints one line per finding (severity, check, message; ``--evidence`` adds the numbers) and a summary.
Exit status: 0 when no finding is an error, 2 when one is (so scripts can gate on it), 1 when the
call itself failed.
"""

from __future__ import annotations

import json

from onthefly.v1 import diagnostics_pb2, diagnostics_pb2_grpc, receipt_pb2

_PREFIX = "HEALTH_CHECK_"
CHECK_NAMES = [k.removeprefix(_PREFIX).lower() for k in diagnostics_pb2.HealthCheck.keys()
               if k != "HEALTH_CHECK_UNSPECIFIED"]
EXIT_FINDINGS_ERROR = 2


def _severity(value: int) -> str:
    return diagnostics_pb2.FindingSeverity.Name(value).removeprefix("FINDING_SEVERITY_")


def _check(value: int) -> str:
    return diagnostics_pb2.HealthCheck.Name(value).removeprefix(_PREFIX).lower()


def _client(args):
    from onthefly.cli.main import _client

    return _client(args)


def _fail(message: str):
    from onthefly.cli.main import CliError

    return CliError(message)


def cmd_health(args) -> int:
    unknown = [name for name in args.checks if name not in CHECK_NAMES]
    if unknown:
        raise _fail(f"unknown health check '{unknown[0]}'; choose from {', '.join(CHECK_NAMES)} (or none for all)")
    with _client(args) as client:
        stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(client.channel)
        if args.list:
            for info in stub.ListHealthChecks(diagnostics_pb2.ListHealthChecksRequest(), timeout=args.timeout).checks:
                print(f"{info.name:14} {info.description}")
            return 0
        request = diagnostics_pb2.RunHealthCheckRequest(
            checks=[diagnostics_pb2.HealthCheck.Value(_PREFIX + name.upper()) for name in args.checks],
            batches=args.batches)
        response = stub.RunHealthCheck(request, timeout=args.timeout)
    receipt = response.receipt
    if receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED:
        raise _fail(f"health check rejected: {receipt.reason}")
    if receipt.status != receipt_pb2.RECEIPT_STATUS_APPLIED:
        raise _fail(f"health check queued as command #{receipt.command_id} but not run before the timeout "
                    f"({args.timeout:g}s); is the run stuck in a long step? try --timeout")
    errors = warnings = 0
    for f in response.findings:
        severity = _severity(f.severity)
        errors += severity == "ERROR"
        warnings += severity == "WARNING"
        if args.json:
            print(json.dumps({"check": _check(f.check), "severity": severity.lower(), "subject": f.subject,
                              "message": f.message, "evidence": dict(f.evidence), "step": receipt.applied_step}))
            continue
        if args.quiet and severity == "INFO":
            continue
        print(f"{severity:7} {_check(f.check):13} {f.message}")
        if args.evidence and f.evidence:
            print("        " + "  ".join(f"{k}={v:.4g}" for k, v in sorted(f.evidence.items())))
    if not args.json:
        print(f"health at step {receipt.applied_step}: {errors} error(s), {warnings} warning(s) "
              f"(held the loop {response.held_seconds:.2f}s)")
    return EXIT_FINDINGS_ERROR if errors else 0


def register(subparsers) -> None:
    """Add `onthefly health` to the CLI's subcommands."""
    p = subparsers.add_parser(
        "health", help="run health checks on a live run (numerics, gradients, activations, ...)",
        description="Run health checks at the next step boundary and print their findings. "
                    "Exit status 2 when a finding is an error.")
    p.add_argument("checks", nargs="*", metavar="CHECK",
                   help="checks to run (default: all): " + ", ".join(CHECK_NAMES))
    p.add_argument("--batches", type=int, default=0, help="batches the activation check samples (default 4)")
    p.add_argument("--json", action="store_true", help="one JSON object per finding")
    p.add_argument("--evidence", action="store_true", help="print the numbers behind each finding")
    p.add_argument("--quiet", "-q", action="store_true", help="print only warnings and errors")
    p.add_argument("--list", action="store_true", help="list the available checks and exit")
    p.set_defaults(func=cmd_health)
