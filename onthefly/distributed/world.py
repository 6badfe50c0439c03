"""World: this process's place in a torch.distributed job, and a store connection of OnTheFly's own."""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from onthefly.distributed.reach import hostname

# A follower's listener blocks in one store read for as long as a person may pause a run: the read
# fails only when the store is gone, never on a timeout a pause could reach.
STORE_READ_TIMEOUT = datetime.timedelta(days=7)

# Each fit in a process gets its own key space; every rank runs its fits in the same order.
_fit_counter = itertools.count()


@dataclass(frozen=True)
class World:
    """Rank, world size and the job's store address, as torch.distributed knows them."""

    rank: int
    world_size: int
    backend: str
    host: str
    store_host: str
    store_port: int
    prefix: str

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def connect_store(self) -> Any:
        """A new client connection to the job's TCPStore, under this fit's prefix.

        Our own connection, not the process group's: a listener blocked in a read holds its connection,
        and the user's own store use (``new_group``, barriers) must never queue behind it."""
        store = dist.TCPStore(self.store_host, self.store_port, is_master=False, timeout=STORE_READ_TIMEOUT,
                              wait_for_workers=False)
        return dist.PrefixStore(self.prefix, store)


def current_world() -> World | None:
    """This process's World when torch.distributed is initialised with more than one rank, else None.

    Raises RuntimeError naming the fix when the job's store is not a TCPStore (``init_method='file://'``):
    directives travel through the store, so OnTheFly needs the TCP rendezvous torchrun and ``env://`` use."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    store = dist.distributed_c10d._get_default_store()
    while isinstance(store, dist.PrefixStore):
        store = store.underlying_store
    if not isinstance(store, dist.TCPStore):
        raise RuntimeError(
            f"onthefly needs the job's torch.distributed store to be a TCPStore (torchrun, init_method='env://' "
            f"or 'tcp://'); this job uses {type(store).__name__}. Start it with torchrun or a tcp:// init_method, or pass "
            f"Trainer(distributed=False) to run every rank stand-alone")
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), hostname(),
                 store.host, store.port, f"onthefly/fit{next(_fit_counter)}/")
