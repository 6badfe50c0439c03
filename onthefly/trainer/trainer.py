"""Trainer: the user's PyTorch loop, hosted so that clients can watch and steer it.

No hidden behaviour: no gradient clipping, no reseeding (unless ``seed=`` is given), the scheduler
steps per epoch unless ``scheduler_interval="step"``, and the user's DataLoader, sampler, collate and
workers are used exactly as given. With the same seed, weights are bit-identical to a plain loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from onthefly.distributed.job import Job
from onthefly.distributed.peers import quiet_sessions, refuse_live_restore
from onthefly.distributed.world import World, current_world
from onthefly.runtime.bus import DEFAULT_HISTORY_EVENTS, EventBus
from onthefly.runtime.context import LoopContext
from onthefly.runtime.events import (
    EvalResult, Event, EventKind, Lifecycle, LifecycleKind, RunState, SampleLosses, StepMetrics,
)
from onthefly.runtime.grad_norm import grad_norm as take_grad_norm
from onthefly.runtime.hooks import RunHook
from onthefly.runtime.host_values import array_later, scalar_later
from onthefly.runtime.log_capture import LogCapture
from onthefly.runtime.loader_tap import TappedLoader, batch_len
from onthefly.runtime.run import Run
from onthefly.runtime.shutdown import end_run
from onthefly.runtime.stats import StatsSampler
from onthefly.sessions.attach import attach_sessions
from onthefly.trainer.evaluate import evaluate
from onthefly.trainer.forward import Forward, to_device
from onthefly.trainer.tracking import tracking_hook

log = logging.getLogger("onthefly")

DEFAULT_PORT = 47621


@dataclass
class FitResult:
    """What fit returns: how far training got and the last evaluation results."""

    steps: int
    epochs: int
    state: RunState
    stopped_early: bool
    val: EvalResult | None
    test: EvalResult | None


class Trainer:
    """Runs ``fit`` on the calling thread and serves the run's gRPC API from a background thread.

    Budget: exactly one of ``max_epochs`` / ``max_steps``. ``port=0`` picks a free port; the default
    47621 falls back to a free port (logged, and written to the discovery file) when taken.
    ``lab_allowance``: the lab may train at most this many times the run's planned sample-gradients (default
    10; the same as ``hooks=[Lab(allowance=...)]``).

    Under torch.distributed with several ranks, rank 0 serves the job and every rank takes its commands
    at the same step. ``distributed=False`` opts out: every rank is a stand-alone run (its own server,
    discovery file, session and commands; nothing coordinated, nothing sent to rank 0). Use it when the
    ranks train independently of each other (a sweep or an ensemble launched with torchrun, no collective
    between them). With DDP or FSDP, a pause on one rank then stalls the others in their next collective
    (until the process group's timeout): keep the default there. When a distributed run fails (a rank
    was lost mid-step), rank 0's API keeps answering ``failure_hold`` seconds after the run's FAILED
    event, so that a client can list the ranks and export what the run has (``onthefly export PATH``).
    """

    def __init__(
        self,
        project: str = "default",
        run_name: str = "run",
        *,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        val_every_n_epochs: int = 1,
        scheduler_interval: str = "epoch",
        accumulate_grad_batches: int = 1,
        precision: str | None = None,
        seed: int | None = None,
        serve: bool = True,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        start_paused: bool = False,
        capture_logging: bool = True,
        capture_prints: bool = False,
        track_grad_norm: bool = True,
        per_sample_loss: bool = True,
        history_events: int = DEFAULT_HISTORY_EVENTS,
        shutdown_grace: float = 5.0,
        hooks: list[RunHook] | None = None,
        lab_allowance: float | None = None,
        track: Any = None,
        distributed: bool = True,
        failure_hold: float = 30.0,
        verbose: bool = True,
    ) -> None:
        if (max_epochs is None) == (max_steps is None):
            raise ValueError("give exactly one budget: Trainer(max_epochs=N) or Trainer(max_steps=N)")
        budget = max_epochs if max_epochs is not None else max_steps
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"the budget must be a positive integer, got {budget!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError("scheduler_interval must be 'epoch' or 'step'")
        if precision not in (None, "32", "16-mixed", "bf16-mixed"):
            raise ValueError("precision must be None, '32', '16-mixed' or 'bf16-mixed'")
        if accumulate_grad_batches < 1:
            raise ValueError("accumulate_grad_batches must be at least 1")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the API listens on loopback only: host must be 127.0.0.1, localhost or ::1")
        self.project, self.run_name = project, run_name
        self.max_epochs, self.max_steps = max_epochs, max_steps
        self.val_every_n_epochs = val_every_n_epochs
        self.scheduler_interval = scheduler_interval
        self.accumulate = accumulate_grad_batches
        self.precision = precision
        self.seed = seed
        self.serve, self.host, self.port = serve, host, port
        self.start_paused = start_paused
        self.capture_logging, self.capture_prints = capture_logging, capture_prints
        self.track_grad_norm = track_grad_norm
        self.per_sample_loss = per_sample_loss
        self.history_events = history_events
        self.shutdown_grace = shutdown_grace
        self.verbose = verbose
        self.distributed = distributed
        if not isinstance(failure_hold, (int, float)) or failure_hold < 0:
            raise ValueError(f"failure_hold must be a number of seconds >= 0, got {failure_hold!r}")
        self.failure_hold = float(failure_hold)
        self._extra_hooks = list(hooks or [])
        if lab_allowance is not None:  # the lab's compute limit, as a multiple of this run's sample-gradients
            from onthefly.lab.lab import Lab

            if any(isinstance(h, Lab) for h in self._extra_hooks):
                raise ValueError("give the lab's allowance once: Lab(allowance=...) in hooks, or "
                                 "Trainer(lab_allowance=...)")
            self._extra_hooks.append(Lab(allowance=lab_allowance))
        self.track = track  # True, a dict of Experiment arguments, or an Experiment: see trainer/tracking.py
        self.experiment: Any = None  # the tracking Experiment of the last fit (when track is on)
        self.run: Run | None = None
        self.server: Any = None
        self.ready = threading.Event()  # set once the server is up (or skipped) and training starts
        self.world: World | None = None  # under torch.distributed with several ranks: this rank's place
        self._job: Job | None = None  # then: this rank's part (rank 0's decisions at one step everywhere)

    # -- public ----------------------------------------------------------------------------------
    @property
    def address(self) -> str | None:
        return None if self.server is None else f"{self.host}:{self.server.port}"

    @property
    def token(self) -> str | None:
        return None if self.server is None else self.server.token

    def fit(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        train_loader: Any = None,
        val_loader: Any = None,
        test_loader: Any = None,
        scheduler: Any = None,
        device: str | torch.device | None = None,
        *,
        step_fn: Callable[..., Any] | None = None,
        do_test_after: bool = False,
        resume_from: str | os.PathLike | None = None,
    ) -> FitResult:
        """Train until the budget is spent or a client stops the run; returns a FitResult.

        ``resume_from``: an exported session bundle; training continues exactly where it stopped.
        """
        if train_loader is None:
            raise TypeError("Trainer.fit needs train_loader=...")
        if self.seed is not None:
            random.seed(self.seed)
            np.random.seed(self.seed)
            torch.manual_seed(self.seed)
        device = torch.device(device) if device is not None else _default_device()
        model.to(device)
        run = Run(self.project, self.run_name, EventBus(history_events=self.history_events))
        run.device = str(device)
        run.max_steps, run.max_epochs = self.max_steps or 0, self.max_epochs or 0
        run.total_steps = self._planned_steps(train_loader)
        for hook in self._extra_hooks:
            run.hooks.add(hook)
        # Under torch.distributed rank 0 serves, tracks and writes sessions; every rank trains the same.
        world = self.world = current_world() if self.distributed else None
        chief = world is None or world.leader
        tracking = tracking_hook(self.track, self, run) if chief else None
        if tracking is not None:
            run.hooks.add(tracking)
            self.experiment = tracking.experiment
        self.run = run
        scaler = _grad_scaler(self.precision, device)
        ctx = LoopContext(run, model, optimizer, loss_fn, device, train_loader, val_loader, test_loader,
                          scheduler, scaler)
        forward = Forward(loss_fn, step_fn, self.per_sample_loss)
        autocast = _autocast_factory(self.precision, device)
        ctx.evaluate = lambda split, reason: evaluate(ctx, forward, split, reason, autocast)
        ctx.forward, ctx.autocast = forward, autocast
        run.control.ctx = ctx
        capture = LogCapture(run, self.capture_logging, self.capture_prints)
        stats = StatsSampler(run)
        error: BaseException | None = None
        result_val: EvalResult | None = None
        result_test: EvalResult | None = None
        try:
            if not chief:
                quiet_sessions(run)
            attach_sessions(ctx, resume_from)  # the run's session store; restores resume_from, if given
            if world is not None:
                refuse_live_restore(ctx)
                self._job = Job(world, run, ctx)
            run.control.state = RunState.RUNNING
            run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.STARTED, RunState.RUNNING, "", run.identity))
            run.hooks.on_fit_start(ctx)
            if self.start_paused:
                run.control.enter_pause(ctx, "started paused: resume to begin")
            capture.open()
            stats.start()
            # The server opens last: the first client already sees the run in its starting state
            # (running, or paused when start_paused), never a half-initialised one.
            if chief:
                self._start_server(run)
            if self._job is not None:
                self._job.served(self.address, self.token)
            self.ready.set()
            result_val = self._train(ctx, forward, autocast)
            if do_test_after and test_loader is not None and not run.control.skip_test:
                result_test = ctx.evaluate("test", "end")
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.ready.set()
            self._finish(run, ctx, error, capture, stats)
        return FitResult(run.step, run.epoch, run.control.state, run.control.stop_requested, result_val, result_test)

    # -- loop ------------------------------------------------------------------------------------
    def _train(self, ctx: LoopContext, forward: Forward, autocast: Callable[[], Any]) -> EvalResult | None:
        run, control, hooks = ctx.run, ctx.run.control, ctx.run.hooks
        boundary = control.boundary if self._job is None else self._job.boundary
        model, optimizer, scaler, scheduler = ctx.model, ctx.optimizer, ctx.scaler, ctx.scheduler
        params = [p for group in optimizer.param_groups for p in group["params"]]
        track_norm = self.track_grad_norm and not _sharded_norm_costs_a_collective(model)
        tapped = ctx.train_batches = TappedLoader(ctx.train_loader)
        index_map = tapped.index_map
        publish = run.bus.publish
        last_val: EvalResult | None = None
        non_blocking = ctx.device.type == "cuda"
        move = ctx.device.type != "cpu"  # CPU batches are used as they come: no per-step walk
        if boundary(ctx):
            return None
        while True:
            # Where training (re)starts: epoch 0 batch 0, or the position a resumed or imported session set.
            epoch = run.epoch = ctx.epoch
            ctx.repositioned = False
            if self._budget_spent(ctx) or (self.max_epochs is not None and epoch >= self.max_epochs):
                return last_val
            _set_sampler_epoch(ctx.train_loader, epoch)
            hooks.on_epoch_start(ctx)
            run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.EPOCH_STARTED, control.state, str(epoch)))
            micro = samples = 0
            tick = time.perf_counter()
            # Per step, the training thread only hands references to the bus: reading values off tensors,
            # mapping indices and building messages happen on the pump thread. On a CPU run every line
            # here runs with caches the step's own tensors have just evicted, so each one counts.
            for batch, index in tapped.raw():
                data_seconds = time.perf_counter() - tick
                if micro % self.accumulate == 0:
                    # Where a plain loop zeroes: right before the forward pass of each step. (The
                    # previous step's gradients stay readable at the boundary for health checks.)
                    optimizer.zero_grad(set_to_none=True)
                if move:
                    batch = to_device(batch, ctx.device, non_blocking)
                with autocast():
                    out = forward(model, batch)
                loss = out.loss
                backward_loss = loss / self.accumulate if self.accumulate > 1 else loss
                if scaler is not None:
                    scaler.scale(backward_loss).backward()
                else:
                    backward_loss.backward()
                micro += 1
                ctx.batch_in_epoch += 1
                per_sample = out.per_sample_loss
                if per_sample is not None:
                    if per_sample.requires_grad:  # a step_fn's own values: hold no graph while they wait
                        per_sample = per_sample.detach()
                    samples += per_sample.shape[0]
                    publish(Event(EventKind.SAMPLE_LOSSES, run.step, epoch, time.time(), SampleLosses(
                        "train", index, array_later(per_sample), index_map)))
                else:
                    samples += batch_len(batch)
                if micro % self.accumulate:
                    continue
                grad_norm = take_grad_norm(params, scaler) if track_norm else None
                if hooks.on_before_optimizer_step(ctx, loss):
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                if scheduler is not None and self.scheduler_interval == "step":
                    _step_scheduler(scheduler, None)
                ctx.step = run.step = ctx.step + 1
                now = time.perf_counter()
                step_seconds = now - tick
                publish(Event(EventKind.STEP_METRICS, ctx.step, epoch, time.time(), StepMetrics(
                    scalar_later(loss), float(optimizer.param_groups[0]["lr"]), scalar_later(grad_norm),
                    samples / step_seconds if step_seconds > 0 else 0.0, samples, step_seconds, data_seconds)))
                samples = 0
                hooks.on_step_end(ctx)
                control.step_done(ctx)
                if boundary(ctx) or self._budget_spent(ctx):
                    return last_val
                if ctx.repositioned:  # an import or restore at this boundary moved the loop
                    break
                tick = time.perf_counter()
            if ctx.repositioned:
                continue
            if micro % self.accumulate:  # leftover micro-batches at the end of an epoch: drop their grads
                optimizer.zero_grad(set_to_none=True)
            if ctx.val_loader is not None and (epoch + 1) % self.val_every_n_epochs == 0:
                last_val = ctx.evaluate("val", "schedule")
            if scheduler is not None and self.scheduler_interval == "epoch":
                _step_scheduler(scheduler, last_val.loss if last_val is not None else None)
            ctx.epoch = run.epoch = epoch + 1
            ctx.batch_in_epoch = 0
            if self.max_epochs is not None and ctx.epoch >= self.max_epochs:
                return last_val
            if boundary(ctx):
                return last_val

    def _budget_spent(self, ctx: LoopContext) -> bool:
        return self.max_steps is not None and ctx.step >= self.max_steps

    def _planned_steps(self, loader: Any) -> int:
        if self.max_steps is not None:
            return self.max_steps
        try:
            return (len(loader) // self.accumulate) * self.max_epochs
        except TypeError:
            return 0

    # -- server and shutdown ---------------------------------------------------------------------
    def _start_server(self, run: Run) -> None:
        if not self.serve:
            return
        from onthefly.server.host import start_server

        self.server = start_server(run, self.host, self.port)
        if self.verbose:
            print(
                f"onthefly: run '{run.identity.project}/{run.identity.run_name}' is live on "
                f"{self.host}:{self.server.port} (follow it with `onthefly watch`)",
                file=sys.stderr,
            )

    def _finish(self, run: Run, ctx: LoopContext, error: BaseException | None, capture: LogCapture,
                stats: StatsSampler) -> None:
        job, self._job = self._job, None
        hold = 0.0
        if error is not None and job is not None and self.server is not None and self.failure_hold:
            hold = self.failure_hold
            log.error("onthefly: the distributed run failed at step %d (%s: %s); rank 0's API stays up %.0f s to "
                      "export what it has: onthefly export PATH", ctx.step, type(error).__name__, error, hold)
        end_run(run, ctx, error, stats=stats, job=job, capture=capture, server=self.server, grace=self.shutdown_grace,
                hold=hold)


def _sharded_norm_costs_a_collective(model: torch.nn.Module) -> bool:
    """True (and said once) when the parameters are sharded across ranks (FSDP): each rank holds a shard
    of every gradient, so their total norm needs an all-reduce, one more blocking collective per step."""
    from onthefly.distributed.sharded import is_sharded

    if not is_sharded(model):
        return False
    log.info("onthefly: parameters are sharded (FSDP): the per-step gradient norm is not taken (it would add an "
             "all-reduce to every step)")
    return True


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    # A DistributedSampler draws each epoch's order from its seed and the epoch it was told: every DDP
    # loop (and Lightning) calls set_epoch before iterating, so the Trainer does it for the user.
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _grad_scaler(precision: str | None, device: torch.device) -> Any:
    if precision == "16-mixed" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def _autocast_factory(precision: str | None, device: torch.device) -> Callable[[], Any]:
    if precision == "16-mixed":
        return lambda: torch.autocast(device.type, dtype=torch.float16)
    if precision == "bf16-mixed":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _step_scheduler(scheduler: Any, metric: float | None) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if metric is not None and not math.isnan(metric):
            scheduler.step(metric)
    else:
        scheduler.step()
