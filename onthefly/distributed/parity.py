"""RankParity: every K steps, each rank's parameters and gradients are compared with rank 0's.

Under DDP every rank holds the same weights and (after the all-reduce) the same gradients, bit for bit.
A rank that drifts (a classic DDP bug: a parameter DDP does not see, a buffer or an in-place update on
one rank) is found here and named with the first tensor that differs.

Cost: every ``every`` steps, per tensor one float64 sum on the device and one host copy of the stacked
sums (the only synchronisation, never per step); the store I/O and the comparison run on a background
thread. A digest is a sum, so it can miss a change that leaves every sum unchanged (exactly opposite
changes inside one tensor); any real drift changes it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from onthefly.runtime.events import EventKind, LogRecord
from onthefly.runtime.hooks import RunHook

if TYPE_CHECKING:
    from onthefly.distributed.roster import Roster
    from onthefly.distributed.world import World
    from onthefly.runtime.context import LoopContext

DIGEST_EVERY = 100  # steps between two comparisons, unless the user passes RankParity(every=K) in hooks=
WAIT_SECONDS = 120.0  # how long rank 0 waits for a rank's digest of a step before it gives up on that step
POLL_SECONDS = 0.05


def digest(model: torch.nn.Module) -> tuple[list[str], np.ndarray]:
    """(names, float64 sums): every parameter, then every gradient present, in the model's order."""
    names, sums = [], []
    params = list(model.named_parameters())
    for name, p in params:
        names.append(name)
        sums.append(p.detach().double().sum())
    for name, p in params:
        if p.grad is not None:
            names.append(f"{name}.grad")
            sums.append(p.grad.detach().double().sum())
    values = torch.stack(sums).cpu().numpy() if sums else np.zeros(0)
    return names, values


def first_difference(names: list[str], mine: np.ndarray, theirs_names: list[str], theirs: np.ndarray) -> str | None:
    """The first tensor whose digest differs (by name), or None when they agree bit for bit."""
    if names != theirs_names:
        return next((a for a, b in zip(names, theirs_names) if a != b), "the list of tensors")
    for name, a, b in zip(names, mine, theirs):
        if a.tobytes() != b.tobytes():  # bitwise: NaN == NaN, and -0.0 differs from 0.0 as the bits do
            return name
    return None


class RankParity(RunHook):
    """Add it on every rank (Job adds a default one). Rank 0 compares; a difference is published as an
    ERROR log event on rank 0's stream and noted on the rank in ``onthefly ranks``."""

    def __init__(self, every: int = DIGEST_EVERY) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every!r}")
        self.every = every
        self.findings: list[str] = []
        self._world: "World | None" = None
        self._roster: "Roster | None" = None
        self._run: Any = None
        self._work: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._reported: set[int] = set()  # ranks already named: one finding per rank, not one per check

    def bind(self, world: "World", run: Any, roster: "Roster | None") -> None:
        self._world, self._run, self._roster = world, run, roster
        self._thread = threading.Thread(target=self._loop, name="onthefly-rank-parity", daemon=True)
        self._thread.start()

    def on_fit_start(self, ctx: "LoopContext") -> None:
        if self._world is not None and not replicated(ctx.model):
            # FSDP shards parameters: each rank holds different values by design. Nothing to compare.
            logging.getLogger("onthefly").info("onthefly: parameters are sharded (FSDP): no cross-rank parity check")
            self.close()
            self._world = None

    def on_step_end(self, ctx: "LoopContext") -> None:
        if self._world is None or ctx.step % self.every:
            return
        names, values = digest(ctx.model)
        self._work.put((ctx.step, names, values))

    def close(self, timeout: float = 5.0) -> None:
        """Finish the comparisons queued so far (before the run's end is published), stop the thread."""
        if self._thread is not None:
            self._work.put(None)
            self._thread.join(timeout)
            self._thread = None

    def on_fit_end(self, ctx: "LoopContext", error: BaseException | None) -> None:
        self.close()

    def _loop(self) -> None:
        store = self._world.connect_store()
        while True:
            item = self._work.get()
            if item is None:
                return
            step, names, values = item
            try:
                if self._world.leader:
                    self._compare(store, step, names, values)
                else:
                    store.set(_key(step, self._world.rank), _encode(names, values))
            except Exception as exc:  # the store went away (the job is ending): stop checking
                logging.getLogger("onthefly").debug("onthefly: rank parity stopped: %s", exc)
                return

    def _compare(self, store: Any, step: int, names: list[str], values: np.ndarray) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        for rank in range(1, self._world.world_size):
            key = _key(step, rank)
            while not store.check([key]):
                if time.monotonic() > deadline:
                    return
                time.sleep(POLL_SECONDS)
            their_names, theirs = _decode(store.get(key))
            store.delete_key(key)
            differs = first_difference(names, values, their_names, theirs)
            if differs is not None and rank not in self._reported:
                self._reported.add(rank)
                kind = "gradient" if differs.endswith(".grad") else "parameter"
                message = (f"rank {rank} diverged from rank 0 by step {step}: first differing tensor is "
                           f"{kind} '{differs.removesuffix('.grad')}'")
                self.findings.append(message)
                if self._roster is not None:
                    self._roster.note(rank, message)
                self._run.publish(EventKind.LOG, LogRecord(logging.ERROR, "onthefly.health", message))


def replicated(model: torch.nn.Module) -> bool:
    """False when the model's parameters are sharded across ranks (FSDP, or DTensor parameters)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch without FSDP
        FullyShardedDataParallel = ()
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        return False
    return not any(type(p).__name__ == "DTensor" or type(p.data).__name__ == "DTensor" for p in model.parameters())


def _key(step: int, rank: int) -> str:
    return f"digest/{step}/{rank}"


def _encode(names: list[str], values: np.ndarray) -> bytes:
    head = "\n".join(names).encode()
    return len(head).to_bytes(8, "little") + head + values.astype("<f8").tobytes()


def _decode(raw: bytes) -> tuple[list[str], np.ndarray]:
    n = int.from_bytes(raw[:8], "little")
    head = raw[8:8 + n].decode()
    return (head.split("\n") if head else []), np.frombuffer(raw[8 + n:], dtype="<f8")
