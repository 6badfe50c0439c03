"""Sessions: the RunHook that gives a run its store folder, checkpoints, export and import.

Trainer.fit attaches a default one; pass your own to configure it::

    sessions = Sessions(store="runs/.onthefly", keep=3, every_n_steps=500)
    Trainer(..., hooks=[sessions]).fit(...)
    sessions.export("run.onthefly")            # any time: during fit (queued at a step boundary) or after

How the data order is replayed: each epoch's DataLoader iterator draws its base seed, then the sampler
draws its order, from the global RNG. The hook records all RNG states when an epoch starts sampling;
a checkpoint carries them with the RNG states now and the batch reached. Resuming sets the recorded
states back when that epoch starts sampling again, skips the batches already trained on without
loading them, and restores the states of the moment the checkpoint was taken before the next batch.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onthefly.distributed.gather import GATHER
from onthefly.health import checkpoints as checkpoint_findings
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, OnTheFlyError, clip
from onthefly.runtime.events import EventKind, LogRecord
from onthefly.runtime.commands import ReceiptStatus
from onthefly.runtime.hooks import RunHook
from onthefly.runtime.loader_tap import TappedLoader
from onthefly.sessions import checkpoint as ck
from onthefly.sessions import rng
from onthefly.sessions.bundle import BundleInfo
from onthefly.sessions.session import Imported, Session, SessionInfo, read_bundle
from onthefly.sessions.store import Store

if TYPE_CHECKING:
    from onthefly.runtime.commands import Command
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.events import EvalResult

log = logging.getLogger("onthefly")

# ctx.extras key: set by a loop that cannot be repositioned while it runs (Lightning owns its position);
# the value, a sentence saying what to do instead, is the error that refuses live import and restore.
NO_LIVE_RESTORE = "sessions.no_live_restore"
# ctx.extras key: True while on_epoch_start runs before the epoch's DataLoader iterator exists (Lightning
# after its first epoch), so the RNG the sampler will draw the order from is one base-seed draw later.
ITERATOR_PENDING = "sessions.iterator_pending"


class _Plan:
    """A restored position waiting for its epoch to start sampling."""

    def __init__(self, plan: ck.ResumePlan, data_order: dict[str, Any]) -> None:
        self.batch_in_epoch = plan.batch_in_epoch
        self.rng_epoch_start = plan.rng_epoch_start
        self.rng_now = plan.rng_now
        self.draws_base_seed = bool(data_order.get("next_epoch_draws_base_seed", True))


class Sessions(RunHook):
    """Checkpoints (on request, on pause, after a test, on a schedule; the ``keep`` newest are kept),
    export to one bundle file, and import from one, for the run it is attached to.

    ``store``: the store directory (default ``$ONTHEFLY_STORE`` or ``./.onthefly``).
    ``every_n_steps`` / ``every_n_epochs``: scheduled checkpoints. ``on_pause``: checkpoint a pause that
    has lasted ``pause_settle`` seconds (a pause resumed sooner, such as each stop of ``step N`` in a
    script, takes none, and the Pause receipt never waits behind the write; 0: every pause, queued
    ahead of any command that follows it). ``after_test``: checkpoint after each test pass.
    ``record_samples``: keep per-sample losses in the store. ``durable``: fsync every write.
    ``enabled=False``: write nothing to the store (``resume_from`` still works). ``keep_crashed``: how
    many sessions of runs that were killed (or whose fit raised) keep their checkpoints when a new
    session cleans the store (``onthefly crashed`` lists them).
    """

    def __init__(self, store: str | os.PathLike | None = None, *, keep: int = 5, every_n_steps: int | None = None,
                 every_n_epochs: int | None = None, on_pause: bool = True, pause_settle: float = 0.5,
                 after_test: bool = True, record_samples: bool = True, durable: bool = True,
                 enabled: bool = True, keep_crashed: int = 3) -> None:
        if keep < 1:
            raise InvalidArgument(f"keep must be at least 1, got {keep}")
        if not isinstance(keep_crashed, int) or keep_crashed < 0:
            raise InvalidArgument(f"keep_crashed must be an integer >= 0, got {keep_crashed!r}")
        self.keep_crashed = keep_crashed
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidArgument(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(pause_settle, (int, float)) or pause_settle < 0:
            raise InvalidArgument(f"pause_settle must be a number of seconds >= 0, got {pause_settle!r}")
        self.store_dir = store
        self.keep = keep
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.checkpoint_on_pause = on_pause
        self.pause_settle = float(pause_settle)
        self.checkpoint_after_test = after_test
        self.record_samples = record_samples
        self.durable = durable
        self.enabled = enabled
        self.session: Session | None = None
        self._ctx: "LoopContext | None" = None
        self._plan: _Plan | None = None
        self._rng_epoch_start: dict[str, Any] | None = None
        self._generators: list = []
        self._tap: TappedLoader | None = None
        self._tapped = False
        self._training_thread: int | None = None

    # -- attaching (Trainer.fit, training thread) ------------------------------------------------
    def attach(self, ctx: "LoopContext", resume_from: str | os.PathLike | None = None) -> None:
        """Open this run's session; with ``resume_from``, continue the bundle's session exactly.

        The bundle is checked completely (and against the model and optimizer) before anything is
        written or changed; a bad one raises BundleError / FailedPrecondition.
        """
        imported = read_bundle(resume_from) if resume_from is not None else None
        try:
            if imported is not None:
                self.check_compatible(ctx, imported)
            self._ctx = ctx
            self._plan = None
            self._rng_epoch_start = None
            self._tap, self._tapped = None, False
            self._training_thread = threading.get_ident()
            self._generators = rng.loader_generators(ctx.train_loader)
            if self.enabled:
                store = Store(self.store_dir)
                self.session = Session(store, store.open_session(keep_crashed=self.keep_crashed), ctx.run.identity, keep=self.keep,
                                       record_samples=self.record_samples, durable=self.durable)
                ctx.run.bus.observe(self.session.history.observe)
                checkpoint_findings.track(ctx)
            if imported is not None:
                self.adopt(ctx, imported, "resumed")
        finally:
            if imported is not None:
                imported.bundle.close()

    def require_session(self) -> Session:
        if self.session is None:
            if not self.enabled:
                raise FailedPrecondition("sessions are disabled for this run (Sessions(enabled=False))")
            raise FailedPrecondition("the run has not started yet; try again once fit() is running")
        return self.session

    # -- hooks -----------------------------------------------------------------------------------
    def on_epoch_start(self, ctx: "LoopContext") -> None:
        tap = getattr(ctx, "train_batches", None)
        if tap is not self._tap:
            self._tap = tap
            self._tapped = tap is not None and tap.on_epoch_sampling(self._on_sampling)
        plan = self._plan
        if plan is not None and (not self._tapped or (plan.batch_in_epoch == 0 and plan.draws_base_seed)):
            # Back to the moment of the checkpoint before this epoch's iterator draws its base seed.
            self._plan = None
            rng.restore(plan.rng_now, self._generators)
        if not self._tapped:
            self._rng_epoch_start = rng.capture(self._generators)
            if ctx.extras.get(ITERATOR_PENDING) and (self._tap is None or not self._tap.reuses_iterator):
                self._rng_epoch_start = rng.after_base_seed(self._rng_epoch_start, ctx.train_loader,
                                                            self._generators)
        n = self.every_n_epochs
        if n and ctx.epoch and ctx.batch_in_epoch == 0 and ctx.epoch % n == 0 and self._plan is None:
            self._scheduled(ctx)

    def _on_sampling(self) -> None:
        """The epoch's iterator drew its base seed; the sampler is about to draw the order."""
        plan, self._plan = self._plan, None
        if plan is None:
            self._rng_epoch_start = rng.capture(self._generators)
            return
        if plan.batch_in_epoch == 0 or plan.rng_epoch_start is None:
            rng.restore(plan.rng_now, self._generators)
            self._rng_epoch_start = plan.rng_now
            if plan.batch_in_epoch:
                self._tap.skip_batches(plan.batch_in_epoch)
            return
        rng.restore(plan.rng_epoch_start, self._generators)
        self._rng_epoch_start = plan.rng_epoch_start
        generators = self._generators
        self._tap.skip_batches(plan.batch_in_epoch, then=lambda: rng.restore(plan.rng_now, generators))

    def on_step_end(self, ctx: "LoopContext") -> None:
        n = self.every_n_steps
        if n and self.session is not None and ctx.step % n == 0:
            self._scheduled(ctx)

    def _scheduled(self, ctx: "LoopContext") -> None:
        if GATHER in ctx.extras:
            # Rank 0 of a distributed run: every rank adds its part (RNG, shards) at a step they all stop
            # at, so the checkpoint is a command, taken at the next one (within ~0.25 s of steps).
            from onthefly.sessions.commands import CreateCheckpoint

            ctx.run.control.submit(CreateCheckpoint(self, reason="schedule"))
        else:
            self._checkpoint_or_warn(ctx, "schedule")

    def on_pause(self, ctx: "LoopContext") -> None:
        if self.checkpoint_on_pause and self.session is not None:
            from onthefly.sessions.commands import CreateCheckpoint

            control = ctx.run.control
            # A command (its outcome in the event stream, like any other), queued once the pause has lasted.
            control.when_pause_settles(lambda: control.submit(CreateCheckpoint(self, reason="pause")),
                                       self.pause_settle)

    def on_eval_end(self, ctx: "LoopContext", result: "EvalResult") -> None:
        if self.checkpoint_after_test and self.session is not None and result.split == "test":
            self._checkpoint_or_warn(ctx, "test")

    def on_fit_end(self, ctx: "LoopContext", error: BaseException | None) -> None:
        if self.session is not None:
            ctx.run.bus.drain()
            self.session.history.flush()
            self.session.folder.mark_ended(error is None)

    def _checkpoint_or_warn(self, ctx: "LoopContext", reason: str) -> None:
        """A checkpoint the user did not ask for right now: if it cannot be written (a full disk),
        the run goes on, a warning says why (its partial files are already removed) and the
        checkpoints health check reports it as a finding from then on."""
        try:
            self.take_checkpoint(ctx, reason, "")
        except (OSError, OnTheFlyError) as exc:
            message = f"onthefly: the {reason} checkpoint at step {ctx.step} was not written: {exc}; training goes on"
            log.warning("%s", message)
            ctx.run.publish(EventKind.LOG, LogRecord(logging.WARNING, "onthefly.sessions", message))
            checkpoint_findings.note_failure(ctx, reason, str(exc))

    # -- domain operations (training thread) -----------------------------------------------------
    def _data_order(self, ctx: "LoopContext") -> tuple[dict, dict | None, dict[str, Any]]:
        """(RNG now, RNG at the epoch's sampling start, data-order facts) for a checkpoint now."""
        plan = self._plan
        if plan is not None:  # restored but not yet replayed: the plan is the truth
            return plan.rng_now, plan.rng_epoch_start, {"batch_in_epoch": plan.batch_in_epoch,
                                                        "next_epoch_draws_base_seed": plan.draws_base_seed}
        draws = not (self._tap.reuses_iterator if self._tap is not None else False)
        return rng.capture(self._generators), self._rng_epoch_start, {
            "batch_in_epoch": ctx.batch_in_epoch, "next_epoch_draws_base_seed": draws}

    def rng_part(self, ctx: "LoopContext") -> dict[str, Any]:
        """This rank's RNG part of a distributed run's checkpoint: its states now and at the epoch's
        sampling start (every rank trains the same position; a script may seed each rank its own way)."""
        rng_now, rng_start, _ = self._data_order(ctx)
        return {"now": rng_now, "epoch_start": rng_start}

    def _whole_job(self, ctx: "LoopContext", rng_now: dict, rng_start: dict | None) -> Any:
        """Under torch.distributed, on rank 0: every rank's part of a checkpoint now (a Gathered), else None."""
        gather = ctx.extras.get(GATHER)
        return None if gather is None else gather.collect(ctx, {"now": rng_now, "epoch_start": rng_start})

    def take_checkpoint(self, ctx: "LoopContext", reason: str, label: str) -> ck.CheckpointInfo:
        session = self.require_session()
        ring = session.checkpoints()
        if reason in ("pause", "schedule") and ring and ring[-1].step == ctx.step and not label:
            return ring[-1]  # nothing trained since the newest checkpoint
        rng_now, rng_start, order = self._data_order(ctx)
        whole = self._whole_job(ctx, rng_now, rng_start)
        return session.save(session.capture(ctx, reason, label, rng_now, rng_start, order, whole))

    def export_now(self, ctx: "LoopContext", path: str | os.PathLike, overwrite: bool = False) -> BundleInfo:
        session = self.require_session()
        rng_now, rng_start, order = self._data_order(ctx)
        whole = self._whole_job(ctx, rng_now, rng_start)
        newest = session.capture(ctx, "export", "", rng_now, rng_start, order, whole)
        return session.export(path, newest, overwrite)

    def check_live_restore(self) -> None:
        """FailedPrecondition if this run's loop cannot be moved to another position while it runs."""
        ctx = self._ctx
        why = ctx.extras.get(NO_LIVE_RESTORE) if ctx is not None else None
        if why:
            raise FailedPrecondition(why)

    def check_compatible(self, ctx: "LoopContext | None", source: Imported | ck.Checkpoint) -> None:
        if ctx is None:
            raise FailedPrecondition("the run has not started training yet; try again once fit() is running")
        checkpoint, state = ((source.checkpoint, source.state) if isinstance(source, Imported)
                             else (source, source.state()))
        ck.check_compatible(ctx, checkpoint, state)
        _check_hyperparameters(ctx.optimizer, state["optimizer"]["param_groups"])
        batch = int(checkpoint.doc["position"]["batch_in_epoch"])
        if batch:
            if not TappedLoader(ctx.train_loader).tappable:
                raise FailedPrecondition(
                    f"the checkpoint stopped mid-epoch (batch {batch}), and this train_loader's order cannot be "
                    "replayed (an IterableDataset or a custom DataLoader subclass); resume from an epoch boundary")
            try:
                batches = len(ctx.train_loader)
            except TypeError:
                batches = None
            if batches is not None and batch > batches:
                raise FailedPrecondition(f"the checkpoint stopped at batch {batch} of its epoch, but this "
                                         f"train_loader has only {batches} batches per epoch")

    def adopt(self, ctx: "LoopContext", imported: Imported, origin: str) -> ck.CheckpointInfo:
        """Swap an imported (fully checked, compatible) bundle's state into the loop, all or nothing:
        its files are staged in the store first, the loop's state is kept in memory, and on any
        failure both are put back, so a refused import leaves the run bit-identical."""
        ctx.run.bus.drain()  # steps published before the swap go to the history being replaced, not the new one
        staged = self.session.stage_import(imported) if self.session is not None else None
        before = LoopSnapshot(ctx, self._generators)
        try:
            plan = ck.restore(ctx, imported.checkpoint, imported.state, _this_rank())
            for states in (plan.rng_now, plan.rng_epoch_start):  # each must load before it is needed
                if states is not None:
                    rng.restore(states, self._generators)
            before.restore_rng()
            if staged is not None:
                self.session.commit_import(staged, imported, origin, plan_step(imported.checkpoint))
        except BaseException:
            before.restore()
            if staged is not None:
                staged.discard()
            raise
        self._plan = _Plan(plan, imported.checkpoint.doc.get("data_order") or {})
        ctx.repositioned = True
        _warn_other_world(imported.state)
        return imported.checkpoint.info

    def restore_checkpoint(self, ctx: "LoopContext", checkpoint: ck.Checkpoint) -> ck.CheckpointInfo:
        ctx.run.bus.drain()  # as in adopt
        state = checkpoint.state()
        before = LoopSnapshot(ctx, self._generators)
        try:
            plan = ck.restore(ctx, checkpoint, state, _this_rank())
        except BaseException:
            before.restore()
            raise
        self._plan = _Plan(plan, checkpoint.doc.get("data_order") or {})
        if self.session is not None:
            self.session.history.load_metric_state(state.get("metrics"))
        ctx.repositioned = True
        return checkpoint.info

    # -- Python API (any thread) -----------------------------------------------------------------
    def _call(self, command: "Command") -> Any:
        ctx = self._ctx
        if ctx is None:
            raise FailedPrecondition("the run has not started yet; call this once fit() is running or after it")
        control = ctx.run.control
        prepare = getattr(command, "prepare", None)
        if prepare is not None:
            prepare()  # heavy reading here, not under the control lock nor on the training thread
        if not control.finished and threading.get_ident() != self._training_thread:
            pending = control.submit(command)
            receipt = pending.wait()
            if receipt.status is ReceiptStatus.REJECTED:
                raise FailedPrecondition(f"{command.name} was rejected: {receipt.reason}")
            return pending.result
        command.check(control)
        return command.apply(ctx)

    def checkpoint(self, label: str = "") -> ck.CheckpointInfo:
        """Take a checkpoint now (at the next step boundary while fit runs)."""
        from onthefly.sessions.commands import CreateCheckpoint

        return self._call(CreateCheckpoint(self, label))

    def export(self, path: str | os.PathLike, overwrite: bool = False) -> BundleInfo:
        """Export the session to one bundle file at ``path`` (relative paths: the working directory)."""
        from onthefly.sessions.commands import ExportSession

        return self._call(ExportSession(self, Path(path).expanduser().resolve(), overwrite))

    def import_session(self, path: str | os.PathLike) -> ck.CheckpointInfo:
        """Replace the run's state with a bundle's (at the next step boundary while fit runs)."""
        from onthefly.sessions.commands import ImportSession

        return self._call(ImportSession(self, Path(path).expanduser().resolve()))

    def restore(self, checkpoint_id: str) -> ck.CheckpointInfo:
        """Go back to a checkpoint of this session."""
        from onthefly.sessions.commands import RestoreCheckpoint

        return self._call(RestoreCheckpoint(self, checkpoint_id))

    def checkpoints(self) -> list[ck.CheckpointInfo]:
        return self.require_session().checkpoints()

    def info(self) -> SessionInfo:
        """The session now: its counts include every event published so far (the bus is drained first,
        as a checkpoint does), so a run paused at step N reports N steps of metrics."""
        session = self.require_session()
        ctx = self._ctx
        if ctx is not None:
            ctx.run.bus.drain()
        return session.info()


def _check_hyperparameters(optimizer: Any, saved_groups: list[dict[str, Any]]) -> None:
    """InvalidArgument unless every numeric hyperparameter of the live optimizer is, in the checkpoint,
    a number the live optimizer accepts (a bundle's 'lr': 'abc' or 1e39 would fail the next step)."""
    from onthefly.runtime import hyperparams

    for g, (live, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        for key, value in live.items():
            if key == "params" or hyperparams._numeric(value) is None:
                continue
            number = hyperparams._numeric(saved.get(key))
            if number is None:
                raise InvalidArgument(f"the checkpoint's optimizer group {g} has {key}={clip(saved.get(key), 40)!s}, "
                                      "not a number")
            try:
                hyperparams.validate(optimizer, {key: number}, [g])
            except InvalidArgument as exc:
                raise InvalidArgument(f"the checkpoint's optimizer group {g}: {exc}") from None


class LoopSnapshot:
    """The loop's state in memory (deep copies), to put back when a swap fails half-way."""

    def __init__(self, ctx: "LoopContext", generators: list) -> None:
        import copy

        self.ctx, self.generators = ctx, generators
        self.model = copy.deepcopy(ctx.model.state_dict())
        self.optimizer = copy.deepcopy(ctx.optimizer.state_dict())
        self.scheduler = copy.deepcopy(ctx.scheduler.state_dict()) if ctx.scheduler is not None else None
        self.scaler = copy.deepcopy(ctx.scaler.state_dict()) if ctx.scaler is not None else None
        self.position = (ctx.step, ctx.run.step, ctx.epoch, ctx.run.epoch, ctx.batch_in_epoch)
        self.rng = rng.capture(generators)

    def restore_rng(self) -> None:
        rng.restore(self.rng, self.generators)

    def restore(self) -> None:
        ctx = self.ctx
        ctx.model.load_state_dict(self.model)
        ctx.optimizer.load_state_dict(self.optimizer)
        if self.scheduler is not None:
            ctx.scheduler.load_state_dict(self.scheduler)
        if self.scaler is not None:
            ctx.scaler.load_state_dict(self.scaler)
        ctx.step, ctx.run.step, ctx.epoch, ctx.run.epoch, ctx.batch_in_epoch = self.position
        self.restore_rng()


def _warn_other_world(state: dict[str, Any]) -> None:
    """Rank 0 resuming a distributed run's checkpoint with another number of ranks: say what differs."""
    import torch.distributed as dist

    saved = len(state["rng"].get("ranks") or [])
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if saved and saved != world and _this_rank() == 0:
        log.warning("onthefly: the checkpoint holds the RNG states of %d ranks and this job has %d: ranks without "
                    "their own resume with rank 0's, and a DistributedSampler splits the data another way, so the "
                    "run does not continue as the original would have", saved, world)


def _this_rank() -> int:
    """This process's rank under torch.distributed (0 otherwise): whose RNG states a resume takes."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def plan_step(checkpoint: ck.Checkpoint) -> int:
    return int(checkpoint.doc["position"]["step"])
