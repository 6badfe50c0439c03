"""A typed Python client for a running trainer: find it, connect with its token, call the stubs.

    from onthefly.client import connect
    with connect() as client:                      # the only running trainer, found by discovery file
        print(client.control.GetStatus(onthefly.v1.control_pb2.GetStatusRequest()))
"""

from __future__ import annotations

from dataclasses import dataclass

from onthefly import _grpc_env  # noqa: F401
import grpc

import numpy as np

from onthefly.server.auth import bearer
from onthefly.server.packed import decode_sample_losses
from onthefly.server.discovery import RunInfo, live_runs
from onthefly.v1 import control_pb2_grpc, telemetry_pb2_grpc


def sample_arrays(msg) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, losses float32) of a SampleLosses message, as numpy arrays, fast."""
    _, indices, losses = decode_sample_losses(msg.SerializeToString())
    return indices, losses


class RunNotFound(LookupError):
    """No running trainer matches, or several do and none was named."""


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                        grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._pair = bearer(token)

    def _details(self, details):
        metadata = list(details.metadata or []) + [self._pair]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


@dataclass
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: list
    credentials: object
    wait_for_ready: bool | None
    compression: object


class RunClient:
    """Stubs for one run, with the token attached to every call. Close it (or use ``with``)."""

    def __init__(self, address: str, token: str, root_certificates: bytes | None = None) -> None:
        self.address = address
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if root_certificates is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:  # a coordinator listening for other hosts: TLS, trusting only its certificate
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self.channel = grpc.intercept_channel(self._channel, _TokenInterceptor(token))
        self.control = control_pb2_grpc.ControlServiceStub(self.channel)
        self.telemetry = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RunClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def find_run(name: str | None = None) -> RunInfo:
    """The running trainer named by run name, run id, pid or port; the only one if ``name`` is None."""
    runs = live_runs()
    if name is not None:
        runs = [r for r in runs if name in (r.run_name, r.run_id, str(r.pid), str(r.port), f"{r.project}/{r.run_name}")]
    if not runs:
        raise RunNotFound(
            "no running trainer found" + (f" matching '{name}'" if name else "")
            + ": start one (Trainer(...).fit) or pass --address HOST:PORT --token TOKEN"
        )
    if len(runs) > 1:
        names = ", ".join(f"{r.project}/{r.run_name} (pid {r.pid}, port {r.port})" for r in runs)
        raise RunNotFound(f"{len(runs)} trainers are running: {names}; name one with --run")
    return runs[0]


def connect(name: str | None = None, address: str | None = None, token: str | None = None,
            root_certificates: bytes | None = None) -> RunClient:
    """Connect to a run by explicit address+token, or through its discovery file. With
    ``root_certificates`` (PEM), over TLS trusting only those: how a rank on another host reaches rank 0."""
    if address is not None:
        if token is None:
            raise ValueError("an explicit address needs its token too (see the run's discovery file)")
        return RunClient(address, token, root_certificates)
    info = find_run(name)
    return RunClient(info.address, info.token)
