"""How the other ranks find rank 0's API: its address and token, through the job's torch.distributed store.

Never a command line or a file: the store is the job's own rendezvous, which every rank already trusts.
A job on one host: ranks dial rank 0's loopback API, as any local client does. A job spanning hosts:
rank 0 also listens on an address the other hosts reach, with TLS (a self-signed certificate, shared
here; its key stays in rank 0's memory) and the same token; the ranks on rank 0's own host still use
the loopback API.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onthefly.distributed import reach

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.run import Run

log = logging.getLogger("onthefly")

API_KEY = "api"
CERT_KEY = "tls/certificate"
POLL_SECONDS = 0.05
# How long rank 0 waits for every rank to say where it runs before it decides how to listen. Ranks
# announce from a background thread as their fit starts, so this is reached only by a rank that
# never starts one; it is then left out (if it runs on another host, it finds no TLS address and declines).
GATHER_SECONDS = 120.0


def declined_key(rank: int) -> str:
    """Set by a rank that will not report to rank 0, so rank 0 does not wait for it at the end."""
    return f"declined/{rank}"


@dataclass(frozen=True)
class Endpoint:
    """Where a rank reports: ``root_certificates`` is rank 0's certificate (PEM) when it dials over TLS."""

    address: str
    token: str
    root_certificates: bytes | None = None


def publish_api(store: Any, address: str | None, token: str | None, host: str = "",
                tls_address: str | None = None, certificate: bytes | None = None) -> None:
    """Rank 0, once its server is up (or with None when it does not serve): tell the other ranks."""
    body: dict = {}
    if address:
        body = {"address": address, "token": token, "host": host}
        if tls_address and certificate:
            store.set(CERT_KEY, certificate)  # before the API: a rank that reads the API finds it
            body["tls_address"] = tls_address
    store.set(API_KEY, json.dumps(body).encode())


class ApiPublisher:
    """Rank 0: learns where every rank runs, listens for other hosts' ranks when there are any, then
    publishes its API; all on a background thread, so the training thread never waits for the others."""

    def __init__(self, world: "World", run: "Run", address: str | None, token: str | None) -> None:
        self.world, self.run = world, run
        self.listener: Any = None  # the TLS listener (onthefly.server.rank_listener), when the job spans hosts
        self._certificate: bytes | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, args=(address, token), name="onthefly-rendezvous",
                                        daemon=True)
        self._thread.start()

    def _publish(self, address: str | None, token: str | None) -> None:
        store = self.world.connect_store()
        if address is None:  # rank 0 does not serve: nobody reports
            publish_api(store, None, None)
            return
        placements = reach.gather(store, self.world, self._stop, GATHER_SECONDS)
        remote = reach.remote(placements)
        # Not once the run is over (close() stops only a listener that exists by then).
        if remote and token is not None and not self._stop.is_set():
            try:
                self._listen(placements, token)
            except Exception as exc:  # whatever failed, the API is still published below: no rank waits on it
                # Rank 0 says why and how to fix it; the job itself goes on, as it would without OnTheFly.
                self._warn(f"{exc}; meanwhile the ranks on other hosts ({_hosts(remote)}) keep their telemetry "
                           "local, and training is unaffected")
        if self.listener is None:
            publish_api(store, address, token, self.world.host)
        else:
            publish_api(store, address, token, self.world.host, self.listener.address, self._certificate)

    def _listen(self, placements: list[reach.Placement], token: str) -> None:
        from onthefly.distributed.tls import self_signed
        from onthefly.server.rank_listener import start_rank_listener  # a server of rank 0's API

        dial_host, listen_ip = reach.coordinator_host(placements)
        identity = self_signed([dial_host, listen_ip])
        self._certificate = identity.certificate
        self.listener = start_rank_listener(self.run, token, identity, dial_host, listen_ip, self.world.world_size)

    def _warn(self, message: str) -> None:
        from onthefly.runtime.events import EventKind, LogRecord

        log.warning("%s", message)
        self.run.publish(EventKind.LOG, LogRecord(logging.WARNING, "onthefly.distributed", message))

    def close(self, grace: float) -> None:
        """The run is over and the ranks have reported: stop listening for other hosts."""
        self._stop.set()
        self._thread.join(grace)
        if self.listener is not None:
            self.listener.stop(grace)


def read_api(world: "World", stop: threading.Event) -> Endpoint | None:
    """Another rank: says where it runs, then waits until rank 0 published its API. None when rank 0 does
    not serve, cannot be reached from this host, or ``stop`` was set first. Polls (a non-blocking check)
    so that it can be given up."""
    store = world.connect_store()
    reach.announce(store, world)
    while not store.check([API_KEY]):
        if stop.wait(POLL_SECONDS):
            return None
    body = json.loads(store.get(API_KEY))
    if not body:
        return None
    if body.get("host") == world.host:
        return Endpoint(body["address"], body["token"])
    if body.get("tls_address"):
        return Endpoint(body["tls_address"], body["token"], store.get(CERT_KEY))
    store.set(declined_key(world.rank), b"1")
    # Rank 0 could not listen for other hosts (it said why in its log). Training is unaffected.
    log.info("onthefly: rank %d runs on %s, rank 0 on %s, and rank 0 offers no address for other hosts: this "
             "rank's telemetry stays local", world.rank, world.host, body.get("host"))
    return None


def _hosts(placements: list[reach.Placement]) -> str:
    return ", ".join(f"rank {p.rank} on {p.host}" for p in placements[:4]) + (", ..." if len(placements) > 4 else "")
