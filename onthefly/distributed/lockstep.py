"""Lockstep: every rank applies rank 0's decisions at the same global step, at no cost per step.

Why this mechanism (measured with ``benchmarks/bench_distributed.py``, 2 gloo ranks, a ~10 ms DDP
step): a per-step broadcast of the decision (what the Lightning integration did) is one more blocking
collective per step: +13% of the training thread's CPU per step there, and on NCCL a device
synchronisation for the host read. A control word riding the gradient all-reduce needs a DDP comm
hook (one per model, which the user may already own) and changes the all-reduce's size, so its
chunking and hence its summation order: not the user's numbers. Instead rank 0 grants the peers a
*horizon*: a step below which it promises no decision. A background thread on rank 0 moves the
horizon forward (~0.25 s of steps at a time, at least 2) through the job's torch.distributed store;
a background thread on every other rank reads it. A peer's training thread compares its step with
the horizon it holds: one comparison per step (~1 us), and the background threads spend ~25-45 us
of CPU per step over both ranks: 0.2-0.4% of the step. Only a peer that outran the horizon waits,
and it waits for a store message, never inside a collective.

A command reaching rank 0 is held until rank 0 reaches the horizon it last granted (so its receipt
says that step), applied there, and the effect is sent with the next horizon in one message. Peers
never pass a horizon before its message arrived, so every directive reaches every peer before the
step it names: every rank pauses, stops and changes hyperparameters at the same step, on any
backend, however far the host runs ahead of the device. While paused no collective is in flight, so
no process group timeout can fire, however long the pause.

Message order is the proof: rank 0 only decides at a step at or beyond the horizon it has granted,
and grants a horizon only in a message sent after every earlier decision, so a peer that has read
the horizon ``h`` has read every directive for a step below ``h``. A pause a step budget ends
(``step N``) is counted down on every rank alike; rank 0 then decides inside that pause.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from onthefly.distributed.directive import Directive, Message, changed_values, follow, snapshot
from onthefly.distributed.sharded import is_sharded
from onthefly.runtime.errors import FailedPrecondition
from onthefly.runtime.events import RunState

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.context import LoopContext

log = logging.getLogger("onthefly")

LEAD_SECONDS = 0.25  # how far ahead of rank 0 a horizon reaches: a held command waits at most about this long
MIN_LEAD = 2  # steps: a slow step (over LEAD_SECONDS / 2) leaves the background threads a whole step to deliver
MAX_LEAD = 1_000_000
RANK0_ALONE_SHARDED = (
    "this command runs the model on rank 0 alone, but the model is sharded across ranks (FSDP): its forward "
    "needs every rank. Not supported for sharded models yet; run it in a single-process run, or from the "
    "training script on every rank")
HEARTBEAT = 0.2  # while paused, how often rank 0 looks for a change to send (commands wake it sooner)


class Leader:
    """Rank 0: hosts the API, decides, and grants horizons. ``boundary`` runs on the training thread."""

    def __init__(self, world: "World", heartbeat: float = HEARTBEAT) -> None:
        self.world = world
        self.heartbeat = heartbeat
        self._store = world.connect_store()
        self._lock = threading.Lock()  # one writer of the message sequence at a time
        self.horizon = 0  # peers may run freely below this step
        self._refresh_at = 0  # from this step on, ask the background thread for a new horizon
        self._hold = False  # commands are waiting for the horizon: grant no new one
        self._lead = MIN_LEAD
        self._mark = (time.monotonic(), 0)  # (time, step) of the last grant: the step rate
        self._wake = threading.Event()
        self._closed = False
        self._step = 0
        self._deciding: int | None = None  # the step of the decision the training thread is in, if any
        self._sharded: bool | None = None  # the model's parameters are sharded (FSDP): known at the first decision
        self._grant(0)
        self._thread = threading.Thread(target=self._granting, name="onthefly-horizon", daemon=True)
        self._thread.start()

    # -- training thread -------------------------------------------------------------------------
    def boundary(self, ctx: "LoopContext") -> bool:
        """Rank 0's boundary: usually one comparison; decides (and tells the peers) at the horizon."""
        step = self._step = ctx.step
        control = ctx.run.control
        if step < self._refresh_at and not control.has_work:
            return control.stop_requested
        if step >= self._refresh_at and not self._wake.is_set():
            self._wake.set()
        if step < self.horizon and not control.has_work:
            return control.stop_requested
        if step < self.horizon and control.state is not RunState.PAUSED:
            self._hold = True  # a command waits for the step every peer knows to stop at
            return control.stop_requested
        return self._decide(ctx)

    def _decide(self, ctx: "LoopContext") -> bool:
        # The peers' state equals rank 0's before this decision (they took every earlier directive, and
        # count a step budget down alike), so only a change needs telling.
        control, step = ctx.run.control, ctx.step
        with self._lock:
            self._hold = False
            wait = 0.0  # the first call applies what is queued and returns: a pause goes out at once
            while True:
                before = snapshot(ctx)
                self._deciding = step
                if self._sharded is None:
                    self._sharded = is_sharded(ctx.model)
                try:
                    with _local_only(ctx.model, self._sharded):
                        stop = control.boundary(ctx, max_wait=wait)
                finally:
                    self._deciding = None
                after = snapshot(ctx)
                wait = self.heartbeat
                paused = after[1] and not stop
                if after != before:
                    horizon = step if paused or stop else max(self.horizon, step + self._lead)
                    self._send(Message(horizon, Directive(step, stop, paused, after[2],
                                                          changed_values(before[3], after[3]))))
                if stop or not paused:
                    if not stop and self.horizon <= step:
                        self._send(Message(step + self._lead))
                    self._refresh_at = self.horizon - self._lead // 2
                    return stop

    def ask_peers(self, ctx: "LoopContext", n: int) -> bool:
        """Training thread, inside a command: tell every peer to add its part to checkpoint ``n`` at this
        step (they wait here: a decision is taken at the horizon). False outside a decision."""
        if self._deciding != ctx.step:
            return False
        # Under _lock already (the decision holds it). The state is unchanged: only the part is asked for.
        self._send(Message(self.horizon, Directive(ctx.step, False, False, 0, collect=n)))
        return True

    def close(self) -> None:
        """The loop is over: release peers still listening, stop the background thread."""
        self._closed = True
        self._wake.set()
        with self._lock:
            try:
                self._send(Message(self.horizon, None, end=True))
            except Exception as exc:  # peers gone already (the job is ending): nothing left to tell
                log.debug("onthefly: could not send the end message: %s", exc)
        self._thread.join(5)

    # -- any thread, under _lock -----------------------------------------------------------------
    def _send(self, message: Message) -> None:
        raw = message.encode()
        for rank in range(1, self.world.world_size):
            self._store.queue_push(inbox_key(rank), raw)
        self.horizon = max(self.horizon, message.horizon)

    def _grant(self, step: int) -> None:
        now = time.monotonic()
        then, then_step = self._mark
        if now > then and step > then_step:
            rate = (step - then_step) / (now - then)
            self._lead = min(MAX_LEAD, max(MIN_LEAD, int(rate * LEAD_SECONDS)))
        self._mark = (now, step)
        self._send(Message(max(self.horizon, step + self._lead)))
        self._refresh_at = self.horizon - self._lead // 2

    # -- background thread -----------------------------------------------------------------------
    def _granting(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            with self._lock:
                self._wake.clear()
                if not self._hold and not self._closed:
                    try:
                        self._grant(self._step)
                    except Exception as exc:  # the store is gone: peers block at the horizon; say why
                        log.warning("onthefly: could not reach the job's store to pace the other ranks: %s", exc)
                        return


class Follower:
    """Every other rank: takes rank 0's directives at their step; waits only beyond the horizon."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self._store = world.connect_store()
        self.horizon = 0
        self._inbox: collections.deque[Directive] = collections.deque()
        self._cond = threading.Condition()
        self._ended = False
        self._error: str = ""
        self.contribute: Any = None  # (ctx, n) -> None: this rank's part of rank 0's checkpoint n (the Job sets it)
        self._thread = threading.Thread(target=self._listening, name="onthefly-directives", daemon=True)
        self._thread.start()

    def boundary(self, ctx: "LoopContext") -> bool:
        """This rank's boundary: one comparison below the horizon with nothing due; else follow rank 0."""
        control = ctx.run.control
        if ctx.step < self.horizon and not self._inbox and control.state is RunState.RUNNING:
            return control.stop_requested
        return self._follow(ctx)

    def ask_peers(self, ctx: "LoopContext", n: int) -> bool:
        return False  # only rank 0 takes checkpoints

    def _follow(self, ctx: "LoopContext") -> bool:
        control, step, inbox = ctx.run.control, ctx.step, self._inbox
        while True:
            while inbox and inbox[0].at <= step:
                directive = inbox.popleft()
                if directive.at < step:  # cannot happen while the horizon holds; say so loudly if it does
                    log.error("onthefly: rank %d took rank 0's decision for step %d late, at step %d",
                              self.world.rank, directive.at, step)
                if directive.collect:
                    if self.contribute is not None:
                        self.contribute(ctx, directive.collect)
                    continue
                follow(ctx, directive)
            if control.stop_requested:
                return True
            if control.state is not RunState.PAUSED and step < self.horizon:
                return False
            if self._error:
                raise RuntimeError(f"onthefly: rank {self.world.rank} lost rank 0's directives: {self._error}")
            if self._ended:
                raise RuntimeError(f"onthefly: rank 0's training loop ended (it failed or was stopped) while rank "
                                   f"{self.world.rank} still trains; see rank 0's log for why")
            with self._cond:
                if not (inbox and inbox[0].at <= step) and self.horizon <= step and not self._ended:
                    self._cond.wait(0.5)  # timed so Ctrl-C still reaches a waiting main thread

    def close(self) -> None:
        """The loop is over: wake the listener with an end message of our own (rank 0's may come much later,
        and a thread still blocked in a store read when the process exits aborts it)."""
        with self._cond:
            self._ended = True
        if self._thread.is_alive():
            try:
                self.world.connect_store().queue_push(inbox_key(self.world.rank), Message(0, None, end=True).encode())
            except Exception as exc:  # the store is gone, and with it the read the listener was blocked in
                log.debug("onthefly: could not wake the directive listener: %s", exc)
            self._thread.join(5)

    def _listening(self) -> None:
        key = inbox_key(self.world.rank)
        while True:
            try:
                raw = self._store.queue_pop(key)
            except Exception as exc:
                with self._cond:
                    if not self._ended:
                        self._error = f"{type(exc).__name__}: {exc}"
                    self._cond.notify_all()
                return
            message = Message.decode(raw)
            with self._cond:
                if message.directive is not None:
                    self._inbox.append(message.directive)  # before the horizon moves past its step
                self.horizon = max(self.horizon, message.horizon)
                self._ended = self._ended or message.end
                self._cond.notify_all()
            if message.end:
                return


def _local_only(model: Any, sharded: bool) -> Any:
    """Commands run on rank 0 alone (a health check's backward, test now): under DDP their backward must
    not start the gradient all-reduce the other ranks will never join, nor their forward a buffer
    broadcast. ``no_sync`` turns both off for work done inside it; training steps never run there.
    A sharded model (FSDP) cannot run forward on one rank at all (each forward gathers the parameters
    from every rank): such a command is refused, before the gather would wait for ranks that never come."""
    if sharded:
        return _refuse_forward(model)
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


@contextlib.contextmanager
def _refuse_forward(model: Any) -> Any:
    def refuse(module: Any, args: Any) -> None:
        raise FailedPrecondition(RANK0_ALONE_SHARDED)

    handle = model.register_forward_pre_hook(refuse, prepend=True)  # before FSDP's own pre-forward gather
    try:
        yield
    finally:
        handle.remove()


def inbox_key(rank: int) -> str:
    """The store queue rank 0 pushes every message into, one per peer (a peer's end wakes only its own)."""
    return f"q/{rank}"


def lockstep(world: "World", heartbeat: float = HEARTBEAT) -> Leader | Follower:
    """This rank's side of the lockstep: ``boundary(ctx) -> stop?`` at every step boundary, ``close()`` at the end."""
    return Leader(world, heartbeat) if world.leader else Follower(world)
