"""Where each rank runs, whether the job spans hosts, and the address other hosts dial rank 0 at.

Every rank other than 0 announces its host name (and the address it dials the job's store at) through
the store; rank 0 reads them all before it says where its API is. A job spans hosts when a rank's host
name differs from rank 0's; only then does rank 0 listen beyond 127.0.0.1.

Environment:
- ``ONTHEFLY_HOSTNAME``: the host name this rank reports instead of ``socket.gethostname()``. A test hook:
  it simulates a multi-host job on one machine (give ranks different names). Not for production use.
- ``ONTHEFLY_COORDINATOR_HOST``: the host name or IP address the other hosts dial rank 0's coordinator at,
  when the automatic choice (below) is wrong for the network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onthefly.distributed.world import World

HOSTNAME_ENV = "ONTHEFLY_HOSTNAME"
COORDINATOR_HOST_ENV = "ONTHEFLY_COORDINATOR_HOST"
POLL_SECONDS = 0.05


def hostname() -> str:
    """This rank's host name as the job sees it (``ONTHEFLY_HOSTNAME`` overrides it, for tests)."""
    return os.environ.get(HOSTNAME_ENV) or socket.gethostname()


def host_key(rank: int) -> str:
    return f"host/{rank}"


@dataclass(frozen=True)
class Placement:
    """Where one rank runs: its host name and the store address it dials (MASTER_ADDR, as it sees it)."""

    rank: int
    host: str
    store_host: str


def announce(store: Any, world: "World") -> None:
    """A rank other than 0: tell rank 0 where it runs."""
    store.set(host_key(world.rank), json.dumps({"host": world.host, "store_host": world.store_host}).encode())


def gather(store: Any, world: "World", stop: threading.Event, timeout: float) -> list[Placement]:
    """Rank 0: every rank's placement (its own first), waiting up to ``timeout`` seconds for the others'
    announcements; a rank not heard from by then (or when ``stop`` is set) is left out."""
    found = [Placement(0, world.host, world.store_host)]
    missing = list(range(1, world.world_size))
    deadline = time.monotonic() + timeout
    while missing:
        for rank in [r for r in missing if store.check([host_key(r)])]:
            body = json.loads(store.get(host_key(rank)))
            found.append(Placement(rank, body["host"], body["store_host"]))
            missing.remove(rank)
        if missing and (time.monotonic() >= deadline or stop.wait(POLL_SECONDS)):
            break
    return sorted(found, key=lambda p: p.rank)


def remote(placements: list[Placement]) -> list[Placement]:
    """The ranks on a host other than rank 0's (empty: the job runs on one host)."""
    return [p for p in placements if p.host != placements[0].host]


def coordinator_host(placements: list[Placement]) -> tuple[str, str]:
    """(the name the other hosts dial rank 0 at, the local IP address rank 0 listens on).

    In order: ``ONTHEFLY_COORDINATOR_HOST``; else the store address a remote rank dials, when it is one of
    rank 0's own addresses (the job's store runs on rank 0's host, as with torchrun's usual MASTER_ADDR:
    every rank already reaches it there); else the address of rank 0's interface that routes towards the
    store or a remote rank's host. Raises RuntimeError naming ``ONTHEFLY_COORDINATOR_HOST`` when none
    is found."""
    explicit = os.environ.get(COORDINATOR_HOST_ENV)
    if explicit:
        address = _local_address(explicit, allow_loopback=True)
        if address is not None:
            return explicit, address
    else:
        others = remote(placements)
        stores = list(dict.fromkeys(p.store_host for p in others))
        for name in stores:
            address = _local_address(name)
            if address is not None:
                return name, address
        for name in [*stores, *dict.fromkeys(p.host for p in others)]:
            address = _route_towards(name)
            if address is not None:
                return address, address
    tried = explicit or ", ".join(stores) or "no store address"
    raise RuntimeError(
        f"onthefly: cannot tell which address of this host the other ranks can reach ({tried} is not one "
        f"of them): set "
        f"{COORDINATOR_HOST_ENV} on rank 0 to a host name or IP address of rank 0's host that the other hosts reach")


def dial_address(host: str, port: int) -> str:
    """``host:port`` for gRPC, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if _is_ip(host) and ":" in host else f"{host}:{port}"


def _local_address(name: str, allow_loopback: bool = False) -> str | None:
    """The first address ``name`` resolves to that belongs to this host (binding it succeeds), or None.

    A host name that resolves to a loopback address here (Debian maps a machine's own name to 127.0.1.1)
    resolves elsewhere on the other hosts: only a loopback IP literal, dialled as such, is taken."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    literal = _is_ip(name)
    for family, _, _, _, sockaddr in infos:
        if ipaddress.ip_address(sockaddr[0]).is_loopback and not (literal or allow_loopback):
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0))
            return sockaddr[0]
        except OSError:
            continue
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _route_towards(name: str) -> str | None:
    """This host's address on the interface that routes to ``name`` (a UDP connect sends nothing)."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(name, 9, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address
