"""The server factory: one place where every option is chosen, each with its reason."""

from __future__ import annotations

import importlib
import logging
import secrets
from concurrent import futures

from onthefly import _grpc_env  # noqa: F401
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onthefly.runtime.run import Run
from onthefly.server.auth import TokenInterceptor
from onthefly.server.control_servicer import ControlServicer
from onthefly.server.discovery import DiscoveryFile, RunInfo, now
from onthefly.server.error_status import ErrorStatusInterceptor
from onthefly.server.stream_limit import StreamLimitInterceptor
from onthefly.server.telemetry_servicer import TelemetryServicer
from onthefly.v1 import control_pb2, control_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

log = logging.getLogger("onthefly")

# Sync grpc holds one pool thread per open stream. Streams (dashboards, CLI watchers, scripts, a
# coordinator) are capped at MAX_STREAMS, and the pool has UNARY_THREADS more, so control and status
# calls are always answered however many streams are open; beyond 64 concurrent RPCs callers get
# RESOURCE_EXHAUSTED instead of queueing forever.
MAX_STREAMS = 16
UNARY_THREADS = 16
MAX_WORKERS = MAX_STREAMS + UNARY_THREADS
MAX_CONCURRENT_RPCS = 64
SERVER_OPTIONS = [
    # Two servers must never share a port silently (Linux SO_REUSEPORT would allow it).
    ("grpc.so_reuseport", 0),
    # Frames of per-sample losses can be large; keep well above the default 4 MiB for big batches.
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]

# Extra servicers other features register: callables (server, run) -> list of service full names.
_EXTENSIONS: list = []
# Feature servicer modules that call register_extension when imported; absent ones are skipped.
FEATURE_SERVICERS = ("onthefly.server.diagnostics_servicer", "onthefly.server.sessions_servicer",
                     "onthefly.server.history_servicer", "onthefly.server.lab_servicer",
                     "onthefly.server.resolution_servicer", "onthefly.server.coordinator_servicer")


def _load_features() -> None:
    for name in FEATURE_SERVICERS:
        try:
            importlib.import_module(name)  # imported once per process, so each registers once
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def register_extension(add) -> None:
    """Register ``add(server, run) -> [service full names]``, called for every run server built."""
    _EXTENSIONS.append(add)


class RunServer:
    """A started server for one run: ``port``, ``token``, ``stop(grace)``."""

    def __init__(self, server: grpc.Server, port: int, token: str, health_servicer, discovery: DiscoveryFile) -> None:
        self.server, self.port, self.token = server, port, token
        self._health = health_servicer
        self._discovery = discovery

    def stop(self, grace: float = 5.0) -> None:
        self._discovery.remove()
        self._health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)


def _bind(server: grpc.Server, host: str, port: int) -> int:
    if port and not _port_free(host, port):
        return 0  # checked first: gRPC would print a raw "Failed to add port" error before we fall back
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    return bound


def _port_free(host: str, port: int) -> bool:
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
        return True
    except OSError:
        return False


def start_server(run: Run, host: str = "127.0.0.1", port: int = 47621) -> RunServer:
    # Hex, so a token never starts with "-" (a CLI would read it as an option).
    token = secrets.token_hex(24)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="onthefly-rpc"),
        # Outermost: whatever a servicer raises maps to a status code with a one-line message, never UNKNOWN.
        interceptors=[ErrorStatusInterceptor(), TokenInterceptor(token), StreamLimitInterceptor(MAX_STREAMS)],
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(TelemetryServicer(run), server)
    control_pb2_grpc.add_ControlServiceServicer_to_server(ControlServicer(run), server)
    names = [
        telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
        control_pb2.DESCRIPTOR.services_by_name["ControlService"].full_name,
    ]
    _load_features()
    for add in _EXTENSIONS:
        names.extend(add(server, run))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = _bind(server, host, port)
    if bound == 0 and port != 0:
        log.warning("onthefly: port %d is taken; serving on another free port instead", port)
        bound = _bind(server, host, 0)
    if bound == 0:
        raise RuntimeError(f"onthefly: could not bind any port on {host}")
    server.start()
    identity = run.identity
    discovery = DiscoveryFile(RunInfo(bound, identity.pid, token, identity.project, identity.run_name,
                                      identity.run_id, now(), host))
    log.info("onthefly: serving %s on %s:%d (discovery file %s)", identity.run_id, host, bound, discovery.path)
    return RunServer(server, bound, token, health_servicer, discovery)
