"""The tracking server factory: one place where every option is chosen, each with its reason."""

from __future__ import annotations

import logging
import os
from concurrent import futures

from onthefly import _grpc_env  # noqa: F401
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from onthefly.tracking.server.handler import MAX_UPLOAD_BYTES, TrackingHandler
from onthefly.tracking.server.servicer import TrackingServicer
from onthefly.tracking.server.tokens import TokenStore
from onthefly.tracking.store import LocalStore
from onthefly.v1 import tracking_pb2, tracking_pb2_grpc

log = logging.getLogger("onthefly.tracking")

DEFAULT_PORT = 47700
SERVICE_NAME = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name
# Each client keeps one writer thread's worth of calls in flight plus file uploads; 16 threads serve a
# team, and beyond 64 concurrent RPCs callers get RESOURCE_EXHAUSTED instead of queueing forever.
MAX_WORKERS = 16
MAX_CONCURRENT_RPCS = 64
SERVER_OPTIONS = [
    # Two servers must never share a port silently (Linux SO_REUSEPORT would allow it).
    ("grpc.so_reuseport", 0),
    # Row pages (100 000 rows) and pushed streams travel as Arrow IPC; allow them with room to spare.
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


class TrackingServer:
    """A started tracking server: ``address``, ``port``, ``store``, ``stop(grace)``."""

    def __init__(self, server: grpc.Server, host: str, port: int, store: LocalStore, health_servicer) -> None:
        self.server, self.host, self.port, self.store = server, host, port, store
        self._health = health_servicer

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving and close every open journal (turning it into Parquet)."""
        self._health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        self.store.close()
        umask = getattr(self, "_umask", None)
        if umask is not None:
            os.umask(umask)

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_tracking_server(root: str | os.PathLike, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                          durable: bool = True, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                          quota_bytes: int | None = None) -> TrackingServer:
    """Serve TrackingService for the store at ``root`` on ``host:port`` (127.0.0.1 only; port 0: any free).

    The store holds several users' data: everything it creates is readable by the server's user only
    (files 0600, folders 0700: the process umask is 077 while it serves). ``max_upload_bytes``: the
    largest file one upload may store; ``quota_bytes``: the most file bytes one user may store."""
    if host != "127.0.0.1":
        raise ValueError(f"the tracking server binds to the loopback interface only, not {host!r} "
                         f"(reach it through an SSH tunnel from other machines)")
    previous_umask = os.umask(0o077)
    store = LocalStore(root, durable=durable, shared_writers=True)
    store.root.mkdir(parents=True, exist_ok=True)
    os.chmod(store.root, 0o700)
    handler = TrackingHandler(store, TokenStore(store.root), max_upload_bytes=max_upload_bytes,
                              quota_bytes=quota_bytes)
    from onthefly.server.error_status import ErrorStatusInterceptor

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="onthefly-tracking"),
                         options=SERVER_OPTIONS, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
                         # what the servicer does not map (an I/O error, a bug) still gets a status, never UNKNOWN
                         interceptors=[ErrorStatusInterceptor()])
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(TrackingServicer(handler), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        os.umask(previous_umask)
        raise OSError(f"cannot listen on {host}:{port}: the port is taken (choose another with --port, or 0 for any)")
    server.start()
    log.info("onthefly: tracking server for %s on %s:%d", store.root, host, bound)
    srv = TrackingServer(server, host, bound, store, health_servicer)
    srv._umask = previous_umask
    return srv
