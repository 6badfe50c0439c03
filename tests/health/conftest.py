"""Fixtures for the health tests: a paused native run on port 0 and helpers to run checks on it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from torch.utils.data import Dataset

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset
from onthefly.v1 import control_pb2, diagnostics_pb2, diagnostics_pb2_grpc, run_pb2
from support import wait_until


class SlowDataset(Dataset):
    """The boring data behind a per-sample delay, like a dataset that decodes files on every access."""

    def __init__(self, n: int = 128, delay: float = 0.008) -> None:
        self.data, self.delay = boring_dataset(n), delay

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        time.sleep(self.delay)  # simulated decoding cost, not synchronisation
        return self.data[i]


@dataclass
class F:
    check: str
    severity: str
    message: str
    subject: str
    evidence: dict


def paused_trainer(**kwargs) -> Trainer:
    kwargs.setdefault("max_epochs", 100)
    return Trainer("health", "test", port=0, start_paused=True, verbose=False, **kwargs)


def run_checks(live, *checks: str, batches: int = 0) -> list[F]:
    stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(live.client.channel)
    request = diagnostics_pb2.RunHealthCheckRequest(
        checks=[diagnostics_pb2.HealthCheck.Value("HEALTH_CHECK_" + c.upper()) for c in checks], batches=batches)
    response = stub.RunHealthCheck(request, timeout=60)
    assert response.receipt.status == 2, response.receipt  # APPLIED
    return [F(diagnostics_pb2.HealthCheck.Name(f.check).removeprefix("HEALTH_CHECK_").lower(),
              diagnostics_pb2.FindingSeverity.Name(f.severity).removeprefix("FINDING_SEVERITY_"),
              f.message, f.subject, dict(f.evidence)) for f in response.findings]


def problems(findings: list[F]) -> list[F]:
    return [f for f in findings if f.severity != "INFO"]


def step_and_wait(live, steps: int) -> int:
    start = live.client.control.GetStatus(control_pb2.GetStatusRequest()).status.step
    live.client.control.Step(control_pb2.StepRequest(steps=steps))

    def done():
        s = live.client.control.GetStatus(control_pb2.GetStatusRequest()).status
        return s.state == run_pb2.RUN_STATE_PAUSED and s.step == start + steps

    wait_until(done, what=f"{steps} steps then a pause")
    return start + steps


def stop(live) -> None:
    live.client.control.Stop(control_pb2.StopRequest(skip_test=True))
    live.join()


@pytest.fixture
def hc():
    """The helpers above, as one fixture: hc.paused_trainer(), hc.run_checks(live, ...), hc.problems(...), ..."""
    return SimpleNamespace(paused_trainer=paused_trainer, run_checks=run_checks, problems=problems,
                           step_and_wait=step_and_wait, stop=stop, SlowDataset=SlowDataset)
