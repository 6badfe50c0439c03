"""Rank 0's listener for ranks on other hosts: CoordinatorService alone, over TLS, with the run's token.

A server of its own, apart from the run's loopback API (which clients outside the job keep using,
unchanged): what listens beyond 127.0.0.1 is only what the other ranks need, on the one address they
dial, and its pool is sized for one report stream per rank, so ranks never compete with dashboards for
the loopback server's stream slots.
"""

from __future__ import annotations

import logging
from concurrent import futures

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.distributed.reach import dial_address
from onthefly.distributed.tls import ServerIdentity
from onthefly.runtime.run import Run
from onthefly.server.auth import TokenInterceptor
from onthefly.server.coordinator_servicer import CoordinatorServicer
from onthefly.server.error_status import ErrorStatusInterceptor
from onthefly.server.host import SERVER_OPTIONS
from onthefly.v1 import coordinator_pb2_grpc

log = logging.getLogger("onthefly")

# Per rank: one ReportRank stream, plus room for its JoinRank and a few ListRanks calls.
SPARE_THREADS = 4


class RankListener:
    """A started listener: ``address`` (as the other ranks dial it), ``stop(grace)``."""

    def __init__(self, server: grpc.Server, address: str) -> None:
        self.server, self.address = server, address

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait(grace + 1)


def start_rank_listener(run: Run, token: str, identity: ServerIdentity, dial_host: str, listen_ip: str,
                        world_size: int) -> RankListener:
    """Serve CoordinatorService on ``listen_ip`` (a free port) with TLS as ``identity`` and ``token``.
    Raises RuntimeError when the address cannot be bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=world_size + SPARE_THREADS, thread_name_prefix="onthefly-ranks"),
        interceptors=[ErrorStatusInterceptor(), TokenInterceptor(token)],
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=2 * world_size + SPARE_THREADS,
    )
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(run), server)
    credentials = grpc.ssl_server_credentials([(identity.private_key, identity.certificate)])
    try:
        port = server.add_secure_port(dial_address(listen_ip, 0), credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise RuntimeError(f"onthefly: could not listen on {listen_ip} for the other hosts' ranks")
    server.start()
    address = dial_address(dial_host, port)
    log.info("onthefly: ranks on other hosts report to %s (TLS, listening on %s)", address,
             dial_address(listen_ip, port))
    return RankListener(server, address)
