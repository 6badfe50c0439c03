"""How the other ranks find rank 0's API: its address and token, through the job's torch.distributed store.

Never a command line or a file: the store is the job's own rendezvous, which every rank already trusts.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onthefly.distributed.world import World

API_KEY = "api"
POLL_SECONDS = 0.05


def declined_key(rank: int) -> str:
    """Set by a rank that will not report to rank 0, so rank 0 does not wait for it at the end."""
    return f"declined/{rank}"


def publish_api(store: Any, address: str | None, token: str | None) -> None:
    """Rank 0, once its server is up (or with None when it does not serve): tell the other ranks."""
    body = {"address": address, "token": token, "host": socket.gethostname()} if address else {}
    store.set(API_KEY, json.dumps(body).encode())


def read_api(world: "World", stop: threading.Event) -> tuple[str, str] | None:
    """Another rank: rank 0's (address, token), waiting until rank 0 published it; None when rank 0 does
    not serve or ``stop`` was set first. Polls (a non-blocking check) so that it can be given up."""
    store = world.connect_store()
    while not store.check([API_KEY]):
        if stop.wait(POLL_SECONDS):
            return None
    body = json.loads(store.get(API_KEY))
    if not body:
        return None
    if body.get("host") != socket.gethostname():
        store.set(declined_key(world.rank), b"1")
        # Rank 0 listens on its own loopback; a rank on another host cannot reach it (a coordinator
        # listening beyond loopback, with TLS, is not built yet). Training is unaffected.
        logging.getLogger("onthefly").info(
            "onthefly: rank %d runs on %s, rank 0 on %s: this rank's telemetry stays local (multi-node "
            "reporting is not supported yet)", world.rank, socket.gethostname(), body.get("host"))
        return None
    return body["address"], body["token"]
