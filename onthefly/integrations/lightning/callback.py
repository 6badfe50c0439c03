"""OnTheFlyCallback: a plain Lightning Callback that hosts the run's API and steers Lightning's loop.

Nothing of Lightning or of the user's objects is patched: the callback reads what Lightning hands its
hooks, publishes the same events as the native Trainer, and treats the end of every optimizer step
(``on_train_batch_end`` after ``global_step`` moved) as the step boundary where the run's Control
applies commands and blocks while paused. A stop sets ``trainer.should_stop``; an optimizer step a
hook refuses (the NumericsGuard) is skipped by dropping its gradients before the optimizer runs.

Under distributed training only rank 0 starts the server (and writes the discovery file); every rank
takes rank 0's decisions at the same step through ``onthefly.distributed.lockstep`` (as the native
Trainer does): nothing per step beyond one comparison, no collective of ours.

Sessions (checkpoints on request, on pause, after a test and on a schedule; export to one bundle) are
the native Trainer's ``onthefly.sessions``, attached on rank 0 when training starts. Lightning owns the
loop's position (global step, epoch, which batch comes next), so a bundle or checkpoint cannot be
swapped into a running Lightning fit: ``ImportSession``/``RestoreCheckpoint`` are refused there with
what to do instead (``LIVE_RESTORE_REFUSED``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from typing import Any, Callable

import torch
from lightning.pytorch.callbacks import Callback

from onthefly.integrations.lightning.samples import (
    LossTap, SamplerTap, epoch_index_batches, find_loss, step_output_values,
)
from onthefly.distributed.job import Job
from onthefly.distributed.world import current_world
from onthefly.runtime.bus import DEFAULT_HISTORY_EVENTS, EventBus
from onthefly.runtime.context import LoopContext
from onthefly.runtime.errors import CommandRejected
from onthefly.runtime.events import (
    EvalResult, EventKind, Lifecycle, LifecycleKind, RunState, SampleLosses, StepMetrics,
)
from onthefly.runtime.grad_norm import grad_norm
from onthefly.runtime.hooks import RunHook
from onthefly.runtime.host_values import array_later, indices_now, scalar_later
from onthefly.runtime.loader_tap import batch_len
from onthefly.runtime.log_capture import LogCapture
from onthefly.runtime.run import Run
from onthefly.runtime.shutdown import end_run
from onthefly.runtime.stats import StatsSampler
from onthefly.sessions.hook import ITERATOR_PENDING, NO_LIVE_RESTORE
from onthefly.trainer.evaluate import _accuracy_counts, evaluate
from onthefly.trainer.forward import Forward
from onthefly.trainer.trainer import DEFAULT_PORT


LIVE_RESTORE_REFUSED = (
    "this run trains under Lightning, which owns the loop's position (global step, epoch, next batch); "
    "a checkpoint or bundle cannot be swapped into it while it runs. Export the session and continue it "
    "with the native onthefly Trainer (Trainer.fit(..., resume_from=PATH)), or resume with Lightning's "
    "own checkpoint (trainer.fit(..., ckpt_path=...))")


def _reuses_iterator(loader: Any) -> bool:
    """True when a new epoch resets the loader's persistent-worker iterator (no new base seed drawn)."""
    return bool(getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0
                and getattr(loader, "_iterator", None) is not None)


def _first(loaders: Any) -> Any:
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


def _scalar_metrics(metrics: dict, needle: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if needle not in key:
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value.item())
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class OnTheFlyCallback(Callback):
    """Hosts an OnTheFly run inside ``lightning.pytorch.Trainer.fit``. Create it with ``attach_lightning``."""

    def __init__(
        self,
        project: str = "default",
        run_name: str = "run",
        *,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        step_fn: Callable[..., Any] | None = None,
        test_loader: Any = None,
        per_sample_loss: bool = True,
        track_grad_norm: bool = True,
        serve: bool = True,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        start_paused: bool = False,
        hooks: list[RunHook] | None = None,
        sessions: Any = True,
        track: Any = None,
        capture_logging: bool = True,
        capture_prints: bool = False,
        history_events: int = DEFAULT_HISTORY_EVENTS,
        shutdown_grace: float = 5.0,
        heartbeat: float = 1.0,
        verbose: bool = True,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the API listens on loopback only: host must be 127.0.0.1, localhost or ::1")
        self.project, self.run_name = project, run_name
        self.loss_fn, self.step_fn = loss_fn, step_fn
        self.test_loader = test_loader
        self.per_sample_loss, self.track_grad_norm = per_sample_loss, track_grad_norm
        self.serve, self.host, self.port = serve, host, port
        self.start_paused = start_paused
        self.capture_logging, self.capture_prints = capture_logging, capture_prints
        self.history_events, self.shutdown_grace = history_events, shutdown_grace
        self.heartbeat, self.verbose = heartbeat, verbose
        self._extra_hooks = list(hooks or [])
        self.sessions = sessions  # True: a default Sessions hook; a Sessions: that one; False: none
        self.track = track  # True, a dict of Experiment arguments, or an Experiment (rank 0 records)
        self.experiment: Any = None  # the tracking Experiment of the last fit (when track is on)
        self.run: Run | None = None
        self.ctx: LoopContext | None = None
        self.server: Any = None
        self.chief = True
        self._telemetry = True
        self.ready = threading.Event()  # set once the server is up (rank 0) and training starts
        self._reset_fit_state()

    def _reset_fit_state(self) -> None:
        self._sync: Job | None = None
        self._tap: LossTap | None = None
        self._order: SamplerTap | None = None  # follows a shuffled train loader's order (one device)
        self._capture: LogCapture | None = None
        self._stats: StatsSampler | None = None
        self._params: list[torch.Tensor] = []
        self._last_global_step = 0
        self._tick = time.perf_counter()
        self._data_seconds = 0.0
        self._samples = 0
        self._loss: Any = None
        self._grad_norm: Any = None
        self._epoch_batches: list | None = None
        self._val: dict[str, Any] | None = None
        self._finished = False
        self._epochs_started = 0

    # -- public ----------------------------------------------------------------------------------
    @property
    def address(self) -> str | None:
        return None if self.server is None else f"{self.host}:{self.server.port}"

    @property
    def token(self) -> str | None:
        return None if self.server is None else self.server.token

    # -- fit start -------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        self._reset_fit_state()
        self.chief = trainer.global_rank == 0
        world = current_world() if trainer.world_size > 1 else None
        run = Run(self.project, self.run_name, EventBus(history_events=self.history_events))
        run.device = str(pl_module.device)
        run.max_steps = trainer.max_steps if (trainer.max_steps or -1) > 0 else 0
        run.max_epochs = trainer.max_epochs if (trainer.max_epochs or -1) > 0 else 0
        for hook in self._extra_hooks:
            run.hooks.add(hook)
        if self.chief and self.track:
            from onthefly.trainer.tracking import tracking_hook

            tracking = tracking_hook(self.track, self, run)
            run.hooks.add(tracking)
            self.experiment = tracking.experiment
        self.run = run
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        loss_fn = self.loss_fn if self.loss_fn is not None else find_loss(pl_module)
        ctx = LoopContext(run, pl_module, optimizer, loss_fn, pl_module.device, None, None,
                          self._test_loader(trainer, pl_module), scheduler, scaler)
        if loss_fn is not None or self.step_fn is not None:
            ctx.forward = Forward(loss_fn, self.step_fn, self.per_sample_loss)
        ctx.autocast = trainer.precision_plugin.forward_context
        ctx.evaluate = self._evaluate
        self.ctx = ctx
        run.control.ctx = ctx
        self._sync = Job(world, run, ctx, self.heartbeat) if world is not None else None
        # Rank 0 serves; under DDP every rank measures its own steps and samples and reports them there.
        self._telemetry = self.chief or self._sync is not None
        self._params = [p for group in optimizer.param_groups for p in group["params"]] if optimizer else []
        if self.per_sample_loss and self._telemetry and isinstance(loss_fn, torch.nn.Module):
            self._tap = LossTap(loss_fn)
        if self.chief and self.per_sample_loss:
            # As early as the loader is known: Lightning creates the first epoch's iterator (and, with
            # workers, draws its first batches of indices) before on_train_start.
            self._follow_order(getattr(getattr(trainer.fit_loop, "_data_source", None), "instance", None))
        if self.chief:
            self._start_server(run)
        if self._sync is not None:
            self._sync.served(self.address, self.token)
        if self.chief:
            self._capture = LogCapture(run, self.capture_logging, self.capture_prints)
            self._capture.open()
            self._stats = StatsSampler(run)
            self._stats.start()
        run.control.state = RunState.RUNNING
        run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.STARTED, RunState.RUNNING, "", run.identity))
        run.hooks.on_fit_start(ctx)

    def _test_loader(self, trainer, pl_module) -> Any:
        if self.test_loader is not None:
            return self.test_loader
        from lightning.pytorch.utilities.model_helpers import is_overridden

        for owner in (trainer.datamodule, pl_module):
            if owner is not None and is_overridden("test_dataloader", owner):
                with contextlib.suppress(Exception):  # e.g. a datamodule whose test set needs setup("test")
                    return _first(owner.test_dataloader())
        return None

    def _start_server(self, run: Run) -> None:
        if not self.serve:
            return
        from onthefly.server.host import start_server

        self.server = start_server(run, self.host, self.port)
        if self.verbose:
            print(f"onthefly: run '{run.identity.project}/{run.identity.run_name}' is live on "
                  f"{self.host}:{self.server.port} (follow it with `onthefly watch`)", file=sys.stderr)

    def _evaluate(self, split: str, reason: str) -> EvalResult:
        ctx = self.ctx
        if ctx.forward is None:
            raise CommandRejected("OnTheFly cannot compute this module's loss outside training_step: pass "
                                  "loss_fn= (the loss module your steps call) or step_fn= to attach_lightning")
        return evaluate(ctx, ctx.forward, split, reason, ctx.autocast)

    def on_train_start(self, trainer, pl_module) -> None:
        ctx, run = self.ctx, self.run
        ctx.train_loader = _first(trainer.train_dataloader)
        ctx.val_loader = _first(trainer.val_dataloaders)
        with contextlib.suppress(Exception):
            total = trainer.estimated_stepping_batches
            run.total_steps = int(total) if math.isfinite(total) else 0
        self._last_global_step = trainer.global_step
        ctx.step = run.step = trainer.global_step
        ctx.epoch = run.epoch = trainer.current_epoch
        if self.chief:
            if self.per_sample_loss:
                self._follow_order(ctx.train_loader)  # a loader from train_dataloader(): known only now
            self._attach_sessions(run, ctx)
        self.ready.set()
        if self.start_paused:  # on every rank: each pauses at step 0 and waits for rank 0's word
            run.control.enter_pause(ctx, "started paused: resume to begin")
        if self._boundary():
            trainer.should_stop = True

    def _follow_order(self, loader: Any) -> None:
        if self._order is not None and self._order.loader is not loader:
            self._order.remove()  # Lightning trains on another loader than the one given to fit
            self._order = None
        if self._order is None and SamplerTap.applies(loader):
            self._order = SamplerTap(loader)

    def _attach_sessions(self, run: Run, ctx: LoopContext) -> None:
        """Rank 0's session store, once the train loader is known (checkpoints record its position)."""
        if self.sessions is False or self.sessions is None:
            return
        from onthefly.sessions.attach import attach_sessions
        from onthefly.sessions.hook import Sessions

        if isinstance(self.sessions, Sessions) and not any(h is self.sessions for h in run.hooks.hooks):
            run.hooks.add(self.sessions)
        ctx.extras[NO_LIVE_RESTORE] = LIVE_RESTORE_REFUSED
        attach_sessions(ctx)

    # -- training --------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        ctx, run = self.ctx, self.run
        ctx.epoch = run.epoch = trainer.current_epoch
        ctx.batch_in_epoch = 0
        # Lightning creates the first epoch's DataLoader iterator before this hook (while setting up
        # the data), every later one after it: sessions record the RNG the sampler draws the order from.
        ctx.extras[ITERATOR_PENDING] = self._epochs_started > 0 and not _reuses_iterator(ctx.train_loader)
        self._epochs_started += 1
        run.hooks.on_epoch_start(ctx)
        if self._telemetry:
            run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.EPOCH_STARTED, run.control.state,
                                                       str(ctx.epoch)))
            self._epoch_batches = epoch_index_batches(ctx.train_loader) if self.per_sample_loss else None
        self._tick = time.perf_counter()
        self._samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._samples == 0:
            self._data_seconds = time.perf_counter() - self._tick
        if self._tap is not None:
            self._tap.arm()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        ctx = self.ctx
        if optimizer is not ctx.optimizer:
            return
        ctx.step = trainer.global_step
        # Lightning has already unscaled AMP gradients here, so no scaler correction is needed.
        self._grad_norm = grad_norm(self._params) if self.track_grad_norm else None
        accumulate = trainer.accumulate_grad_batches
        loss = self._loss * accumulate if (self._loss is not None and accumulate > 1) else self._loss
        if not self.run.hooks.on_before_optimizer_step(ctx, loss):
            for p in self._params:  # an optimizer skips parameters without a gradient: the step is a no-op
                p.grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ctx, run = self.ctx, self.run
        self._samples += batch_len(batch)
        ctx.batch_in_epoch = batch_idx + 1
        if self._telemetry:
            # Every batch takes its indices from the tap, whether or not it yields per-sample losses.
            order = self._order.take(batch_len(batch)) if self._order is not None else None
            self._publish_samples("train", outputs, batch, batch_idx, self._epoch_batches, order)
        if trainer.global_step == self._last_global_step:
            return  # accumulating gradients: not a step boundary
        self._last_global_step = trainer.global_step
        ctx.step = run.step = trainer.global_step
        step_seconds = time.perf_counter() - self._tick
        if self._telemetry:
            accumulate = trainer.accumulate_grad_batches
            loss = self._loss * accumulate if (self._loss is not None and accumulate > 1) else self._loss
            lr = float(ctx.optimizer.param_groups[0]["lr"]) if ctx.optimizer is not None else math.nan
            run.publish(EventKind.STEP_METRICS, StepMetrics(
                scalar_later(loss) if loss is not None else math.nan, lr, scalar_later(self._grad_norm),
                self._samples / step_seconds if step_seconds > 0 else 0.0, self._samples, step_seconds,
                self._data_seconds))
        self._samples = 0
        self._grad_norm = None
        run.hooks.on_step_end(ctx)
        run.control.step_done(ctx)  # every rank counts a step budget down alike
        if self._boundary():
            trainer.should_stop = True
        self._tick = time.perf_counter()

    def _boundary(self) -> bool:
        if self._sync is not None:
            return self._sync.boundary(self.ctx)
        return self.run.control.boundary(self.ctx)

    def _publish_samples(self, split: str, outputs: Any, batch: Any, batch_idx: int, epoch_batches,
                         followed: Any = None) -> tuple:
        per_sample, indices = step_output_values(outputs)
        pred = target = None
        if self._tap is not None:
            tapped, pred, target = self._tap.take()
            if per_sample is None:
                per_sample = tapped
        if per_sample is None:
            return None, pred, target
        if indices is None and epoch_batches is not None and batch_idx < len(epoch_batches):
            indices = epoch_batches[batch_idx]
        if indices is None:
            indices = followed
        self.run.publish(EventKind.SAMPLE_LOSSES, SampleLosses(split, indices_now(indices),
                                                                  array_later(per_sample.detach())))
        return per_sample, pred, target

    # -- validation (Lightning's own loop) -------------------------------------------------------
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.run is None or not self.chief:
            return
        control = self.run.control
        loaders = trainer.val_dataloaders
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        self._val = {"previous": control.state, "sum": 0.0, "count": 0, "correct": 0, "labelled": 0,
                     "started": time.perf_counter(),
                     "batches": [epoch_index_batches(dl) if self.per_sample_loss else None for dl in loaders]}
        control.state = RunState.TESTING
        self.run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.TEST_STARTED, RunState.TESTING, "val"))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._val is not None and self._tap is not None:
            self._tap.arm()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        val = self._val
        if val is None:
            return
        batches = val["batches"][dataloader_idx] if dataloader_idx < len(val["batches"]) else None
        per_sample, pred, target = self._publish_samples("val", outputs, batch, batch_idx, batches)
        if per_sample is not None:
            val["sum"] += float(per_sample.float().sum())
            val["count"] += int(per_sample.shape[0])
        acc = _accuracy_counts(pred, target)
        if acc is not None:
            val["correct"] += acc[0]
            val["labelled"] += acc[1]

    def on_validation_end(self, trainer, pl_module) -> None:
        val, self._val = self._val, None
        if val is None:
            return
        metrics = _scalar_metrics(trainer.callback_metrics, "val")
        if val["labelled"]:
            metrics.setdefault("accuracy", val["correct"] / val["labelled"])
        if val["count"]:
            loss = val["sum"] / val["count"]
        else:
            loss = next((v for k, v in metrics.items() if "loss" in k), math.nan)
        result = EvalResult("val", loss, val["count"], metrics, time.perf_counter() - val["started"], "schedule")
        control = self.run.control
        if control.state is RunState.TESTING:
            control.state = val["previous"]
        self.run.publish(EventKind.EVAL_RESULT, result)
        self.run.publish(EventKind.LIFECYCLE, Lifecycle(LifecycleKind.TEST_FINISHED, control.state, "val"))
        self.run.hooks.on_eval_end(self.ctx, result)

    # -- the end ---------------------------------------------------------------------------------
    def on_fit_end(self, trainer, pl_module) -> None:
        self._finish(None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._finish(exception)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        run, ctx = self.run, self.ctx
        if run is None or self._finished:
            return
        self._finished = True
        job, self._sync = self._sync, None
        end_run(run, ctx, error, stats=self._stats, job=job, capture=self._capture, server=self.server,
                grace=self.shutdown_grace, after_end=(self._remove_taps,))
        self.ready.set()

    def _remove_taps(self) -> None:
        if self._tap is not None:
            self._tap.remove()
        if self._order is not None:
            self._order.remove()
            self._order = None
