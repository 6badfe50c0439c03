"""RankGather: a checkpoint of the whole job, taken at one step with every rank's part in it.

Rank 0 alone writes checkpoints and exports, but two things it cannot read from itself: each rank's
random number generators (a script that seeds per rank, ``torch.manual_seed(base + rank)``, draws a
different dropout mask on every rank) and, for a model sharded by FSDP, the other ranks' shards. So a
checkpoint is taken inside a decision of rank 0 (a command applied at a step every peer stops at): rank
0 sends the peers a *collect* directive for that step; each peer puts its RNG states in the job's store
and, for a sharded model, enters the full-state gather, which rank 0 enters too. Nothing runs per step.

Store messages are JSON with the RNG tensors as base64 bytes (never pickle).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from onthefly.distributed.sharded import gather_full_state, is_sharded
from onthefly.runtime.errors import FailedPrecondition
from onthefly.sessions import codec

if TYPE_CHECKING:
    from onthefly.distributed.lockstep import Follower, Leader
    from onthefly.distributed.world import World
    from onthefly.runtime.context import LoopContext

log = logging.getLogger("onthefly")

# ctx.extras key of rank 0's RankGather: the Sessions hook asks it for every rank's part of a checkpoint.
GATHER = "distributed.gather"

WAIT_SECONDS = 120.0  # how long rank 0 waits for a peer's part before the checkpoint fails (a lost rank)
POLL_SECONDS = 0.02

NOT_AT_A_SHARED_STEP = (
    "the model is sharded across ranks (FSDP): a checkpoint or export gathers every rank's shard, which only "
    "works at a step every rank stops at. Ask for it while fit() runs (CreateCheckpoint / ExportSession, or "
    "Sessions.checkpoint()/export() from another thread): it is taken at the next such step")


RANKS_GONE = (
    "the run has ended and its model is sharded across ranks (FSDP): its full state needs every rank, and the "
    "other ranks have left. The session's newest checkpoint holds the state gathered last")


@dataclass(frozen=True)
class Gathered:
    """What rank 0 collected. ``model``/``optimizer``: full state dicts of a sharded model (else None);
    ``ranks``: every rank's RNG part, by rank (None when the peers could not be asked: see ``collect``)."""

    model: dict[str, Any] | None
    optimizer: dict[str, Any] | None
    ranks: list[dict[str, Any]] | None


class RankGather:
    """Rank 0: ``collect`` (ctx.extras[GATHER], called by the Sessions hook). Other ranks: ``contribute``
    (called by the lockstep follower when a collect directive reaches its step). Training thread only."""

    def __init__(self, world: "World", lockstep: "Leader | Follower") -> None:
        self.world = world
        self.lockstep = lockstep
        self._store = world.connect_store()
        self._ids = itertools.count(1)

    # -- rank 0 ----------------------------------------------------------------------------------
    def collect(self, ctx: "LoopContext", own: dict[str, Any]) -> Gathered:
        """Every rank's part of a checkpoint at ``ctx.step``; ``own`` is rank 0's RNG part.

        Inside a decision every peer waits at this step and takes part. Elsewhere (a hook or after fit on
        rank 0 alone) the peers cannot: an unsharded model's checkpoint then holds rank 0's RNG alone
        (``ranks`` None, as every rank resumes with it), and a sharded model's raises FailedPrecondition."""
        sharded = is_sharded(ctx.model)
        n = next(self._ids)
        if not self.lockstep.ask_peers(ctx, n):
            if sharded:
                raise FailedPrecondition(RANKS_GONE if ctx.run.control.finished else NOT_AT_A_SHARED_STEP)
            return Gathered(None, None, None)
        model = optimizer = None
        if sharded:
            model, optimizer = gather_full_state(ctx.model, ctx.optimizer)
        ranks = [own] + [self._read(n, rank) for rank in range(1, self.world.world_size)]
        return Gathered(model, optimizer, ranks)

    def _read(self, n: int, rank: int) -> dict[str, Any]:
        key = _key(n, rank)
        deadline = time.monotonic() + WAIT_SECONDS
        while not self._store.check([key]):
            if time.monotonic() > deadline:
                raise FailedPrecondition(
                    f"rank {rank} did not send its part of the checkpoint within {WAIT_SECONDS:.0f} s; it may have "
                    f"been lost (see `onthefly ranks`). Nothing was written")
            time.sleep(POLL_SECONDS)
        raw = self._store.get(key)
        self._store.delete_key(key)
        return decode_part(raw)

    # -- other ranks -----------------------------------------------------------------------------
    def contribute(self, ctx: "LoopContext", n: int) -> None:
        """This rank's part of rank 0's checkpoint ``n``: its RNG states, and its shard when sharded."""
        from onthefly.sessions.hook import Sessions

        sessions = next((h for h in ctx.run.hooks.hooks if isinstance(h, Sessions)), None)
        part = sessions.rng_part(ctx) if sessions is not None else {}
        self._store.set(_key(n, self.world.rank), encode_part(part))
        if is_sharded(ctx.model):
            gather_full_state(ctx.model, ctx.optimizer)  # rank 0 keeps the full dicts


def _key(n: int, rank: int) -> str:
    return f"collect/{n}/{rank}"


def encode_part(part: dict[str, Any]) -> bytes:
    """JSON of a rank's RNG part; its tensors (RNG states, all uint8) as base64."""
    skeleton, tensors = codec.encode(part, where="the rank's RNG state")
    blobs = {}
    for key, tensor in tensors.items():
        if tensor.dtype != torch.uint8:
            raise ValueError(f"an RNG state tensor must be uint8, got {tensor.dtype}")
        blobs[key] = base64.b64encode(tensor.contiguous().numpy().tobytes()).decode()
    return json.dumps({"s": skeleton, "t": blobs}, separators=(",", ":")).encode()


def decode_part(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    tensors = {key: _uint8(base64.b64decode(blob)) for key, blob in body["t"].items()}
    return codec.decode(body["s"], tensors)


def _uint8(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
