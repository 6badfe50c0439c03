"""DiagnosticsService over a real server: listing, bad input status codes, and the CLI on top."""

from __future__ import annotations

import json

import grpc
import pytest
import torch

from onthefly.cli.main import main as cli
from onthefly.demos.boring import boring_setup
from onthefly.health import RunHealthCheck
from onthefly.runtime.errors import InvalidArgument
from onthefly.v1 import diagnostics_pb2, diagnostics_pb2_grpc


@pytest.fixture
def live(live_run, hc):
    model, opt, loss, loader = boring_setup()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every ReLU dead: the activation check reports an error
    run = live_run(hc.paused_trainer(), model, opt, loss, loader)
    yield run
    hc.stop(run)


def _stub(live):
    return diagnostics_pb2_grpc.DiagnosticsServiceStub(live.client.channel)


def test_lists_every_check(live):
    checks = _stub(live).ListHealthChecks(diagnostics_pb2.ListHealthChecksRequest()).checks
    assert [c.name for c in checks] == ["numerics", "gradients", "activations", "throughput", "determinism",
                                        "configuration", "checkpoints"]
    assert all(c.description and c.check for c in checks)


@pytest.mark.parametrize("request_kwargs,needle", [
    ({"checks": [diagnostics_pb2.HEALTH_CHECK_UNSPECIFIED]}, "not a health check"),
    ({"checks": [42]}, "not a health check"),
    ({"batches": 65}, "batches must be between 1 and 64"),
])
def test_bad_requests_are_invalid_argument(live, request_kwargs, needle):
    with pytest.raises(grpc.RpcError) as err:
        _stub(live).RunHealthCheck(diagnostics_pb2.RunHealthCheckRequest(**request_kwargs))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()


def test_unknown_check_name_in_the_domain():
    with pytest.raises(InvalidArgument, match="unknown health check 'vibes'; choose from numerics"):
        RunHealthCheck(["vibes"]).check(None)


def test_cli_prints_findings_and_exits_2_on_an_error(live, capsys):
    target = ["--address", live.trainer.address, "--token", live.trainer.token]
    assert cli(target + ["health", "activations", "gradients"]) == 2
    out = capsys.readouterr().out
    assert "ERROR   activations" in out and "dead" in out and "health at step 0: 1 error(s)" in out
    assert cli(target + ["health", "--json", "numerics"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["check"] == "numerics" and r["severity"] == "info" and r["step"] == 0 for r in rows)
    assert cli(target + ["health", "--list"]) == 0
    assert "determinism" in capsys.readouterr().out
    assert cli(target + ["health", "vibes"]) == 1
    assert "unknown health check 'vibes'" in capsys.readouterr().err
