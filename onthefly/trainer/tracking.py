"""``Trainer(track=...)``: record a run into the experiment-tracking SDK (one store, one run identity).

    Trainer("vision", "resnet", max_epochs=3, track=True)                  # .dash/<user>/vision/resnet/<stamp>
    Trainer(..., track={"dash_root": "runs", "tags": ["baseline"]})        # Experiment(...) arguments
    Trainer(..., track=Experiment(prefix="alice/vision/sweep-3"))          # an experiment you made

The experiment's prefix is ``<owner>/<run id>`` (the run id is ``<project>/<run name>/<stamp>``), so the
tracked experiment and the live run share one identity; the run id is also kept in its metadata. At fit
start the hyperparameters, trainer options and model size are stored as params. During the run every
event the training loop publishes reaches the experiment through the bus's pump thread, with values
already on the host: step metrics (loss, lr, grad_norm, samples_per_second, ...) into metric "train",
validation and test results into metrics "val" and "test", runtime stats into "system", captured log
lines and lifecycle changes into the log. The training thread itself never calls the SDK per step, so it
never waits on it, and the weights are bit-identical with tracking on or off. At fit end the experiment
is flushed and, unless you passed one that is already running, closed: COMPLETED, CANCELLED
(KeyboardInterrupt) or FAILED with the exception's text.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import TYPE_CHECKING, Any

from onthefly.runtime.events import EventKind
from onthefly.runtime.hooks import RunHook
from onthefly.runtime.hyperparams import read_groups

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.run import Run
    from onthefly.tracking import Experiment

# Trainer(...) argument -> the attribute that holds it.
TRAINER_OPTIONS = {"max_epochs": "max_epochs", "max_steps": "max_steps", "val_every_n_epochs": "val_every_n_epochs",
                   "scheduler_interval": "scheduler_interval", "accumulate_grad_batches": "accumulate",
                   "precision": "precision", "seed": "seed", "track_grad_norm": "track_grad_norm",
                   "per_sample_loss": "per_sample_loss"}
_LEVELS = ((40, "error"), (30, "warn"), (20, "info"), (0, "debug"))  # Python level number -> SDK level


def tracking_hook(track: Any, trainer: Any, run: "Run") -> "TrackingHook | None":
    """The hook for ``Trainer(track=...)``: None/False (off), True, a dict of Experiment arguments, or an
    Experiment."""
    if track is None or track is False:
        return None
    from onthefly.tracking import Experiment

    identity = run.identity
    options = {name: getattr(trainer, attr, None) for name, attr in TRAINER_OPTIONS.items()}
    if isinstance(track, Experiment):
        return TrackingHook(track, options)
    if track is True:
        kwargs: dict[str, Any] = {}
    elif isinstance(track, dict):
        kwargs = dict(track)
    else:
        raise TypeError(f"track must be True, a dict of Experiment arguments or an Experiment, "
                        f"got {type(track).__name__}")
    if kwargs.get("prefix") is None:  # <owner>/<project>/<run name>/<stamp>; the Experiment finds the owner
        kwargs["project"] = identity.project
        kwargs["prefix"] = identity.run_id[len(identity.project) + 1:]
    kwargs.setdefault("echo", False)  # the run's own console output stays as it was
    kwargs["metadata"] = {**kwargs.get("metadata", {}), "onthefly_run_id": identity.run_id,
                          "project": identity.project, "run_name": identity.run_name}
    return TrackingHook(Experiment(**kwargs), options)


class TrackingHook(RunHook):
    """Feeds one run's events into one Experiment. ``experiment`` is the Experiment."""

    def __init__(self, experiment: "Experiment", options: dict[str, Any]) -> None:
        self.experiment = experiment
        self._options = options
        self._owns = False  # whether we started it (then we close it)
        self._lock = threading.Lock()  # the pump thread's writes vs closing at fit end
        self._open = False
        self._errors = 0

    # training thread -----------------------------------------------------------------------------------
    def on_fit_start(self, ctx: "LoopContext") -> None:
        exp = self.experiment
        if not exp.is_running:
            exp.run.start()
            self._owns = True
        identity = ctx.run.identity
        model, optimizer = ctx.model, ctx.optimizer
        groups = read_groups(optimizer)
        params: dict[str, Any] = {
            "trainer": {k: v for k, v in self._options.items() if v is not None},
            "optimizer": {"class": type(optimizer).__name__, **groups[0][1]} if groups else {},
            "model": {"class": type(model).__name__,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)},
            "device": str(ctx.device), "run_id": identity.run_id,
        }
        if len(groups) > 1:
            params["optimizer"]["groups"] = [values for _, values in groups]
        if ctx.scheduler is not None:
            params["scheduler"] = type(ctx.scheduler).__name__
        batch_size = getattr(ctx.train_loader, "batch_size", None)
        if isinstance(batch_size, int):
            params["batch_size"] = batch_size
        exp.params.set(params)
        exp.log(f"fit started: run {identity.run_id}", metadata={"pid": identity.pid})
        ctx.extras["tracking"] = exp
        self._open = True
        ctx.run.bus.observe(self._observe)

    def on_fit_end(self, ctx: "LoopContext", error: BaseException | None) -> None:
        run = ctx.run
        run.bus.drain()  # every event published so far reaches _observe before we close
        with self._lock:
            self._open = False
        exp = self.experiment
        if not exp.is_running:
            return
        dropped = run.bus.dropped_at_source
        summary = {"steps": run.step, "epochs": run.epoch, "state": run.control.state.name,
                   "stopped_early": run.control.stop_requested, "events_dropped_before_tracking": dropped,
                   "tracking_errors": self._errors}
        if dropped:
            exp.log(f"the run's event queue dropped {dropped} events before tracking saw them (the pump thread "
                    f"fell behind); their step metrics are missing", level="warn", metadata=summary)
        exp.log("fit finished" if error is None else f"fit failed: {type(error).__name__}: {error}",
                level="info" if error is None else "error", metadata=summary)
        if not self._owns:
            exp.flush()
        elif error is None:
            exp.run.complete()
        elif isinstance(error, KeyboardInterrupt):
            exp.run.cancel("KeyboardInterrupt")
        else:
            exp.run.fail(error)

    # bus pump thread -------------------------------------------------------------------------------------
    def _observe(self, events: list) -> None:
        with self._lock:
            if not self._open:
                return
            try:
                for event in events:
                    self._record(event)
            except Exception as exc:  # noqa: BLE001 - tracking must never break the run's event bus
                self._errors += 1
                if self._errors == 1:
                    warnings.warn(f"onthefly: tracking could not record an event: {type(exc).__name__}: {exc}",
                                  RuntimeWarning)

    def _record(self, event) -> None:
        kind, p, exp = event.kind, event.payload, self.experiment
        if kind is EventKind.STEP_METRICS:
            row = {"step": event.step, "epoch": event.epoch, "loss": p.loss, "lr": p.lr,
                   "samples_per_second": p.samples_per_second, "batch_size": p.batch_size,
                   "step_seconds": p.step_seconds, "data_seconds": p.data_seconds, "_ts": event.time}
            if self._options.get("track_grad_norm") or not math.isnan(p.grad_norm):
                row["grad_norm"] = p.grad_norm
            exp.metrics("train").log(row, **p.extra)
        elif kind is EventKind.EVAL_RESULT:
            exp.metrics(p.split).log({"step": event.step, "epoch": event.epoch, "loss": p.loss, "samples": p.samples,
                                      "seconds": p.seconds, "reason": p.reason, "_ts": event.time}, **p.metrics)
        elif kind is EventKind.RUNTIME_STATS:
            exp.metrics("system").log(step=event.step, cpu_percent=p.cpu_percent, rss_bytes=p.rss_bytes,
                                      threads=p.threads, events_dropped=p.dropped_at_source, _ts=event.time)
        elif kind is EventKind.LOG:
            if not p.logger.startswith("onthefly.tracking"):  # never feed the SDK's own warnings back
                level = next(name for floor, name in _LEVELS if p.level >= floor)
                exp.log(p.message, level=level, metadata={"logger": p.logger, "step": event.step})
        elif kind is EventKind.LIFECYCLE:
            text = p.kind.name.lower().replace("_", " ") + (f": {p.message}" if p.message else "")
            exp.log(text, metadata={"step": event.step, "epoch": event.epoch, "state": p.state.name})
