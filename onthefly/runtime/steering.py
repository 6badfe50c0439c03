"""The built-in steering commands: pause, resume, stop, step N, run test, set hyperparameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from onthefly.runtime import hyperparams
from onthefly.runtime.commands import Command
from onthefly.runtime.errors import CommandRejected, FailedPrecondition, InvalidArgument
from onthefly.runtime.events import RunState

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control


class Pause(Command):
    name = "pause"

    def apply(self, ctx: "LoopContext") -> int:
        control = ctx.run.control
        control.pending_steps = 0
        control.enter_pause(ctx, "paused on request")
        return ctx.step

    def describe(self, result: Any) -> str:
        return f"paused at step {result}"


class Resume(Command):
    name = "resume"

    def check(self, control: "Control") -> None:
        if control.state is not RunState.PAUSED and not control.pending_steps:
            raise FailedPrecondition(f"the run is {control.state.name.lower()}, not paused; nothing to resume")

    def apply(self, ctx: "LoopContext") -> int:
        control = ctx.run.control
        if control.state is not RunState.PAUSED and not control.pending_steps:
            raise CommandRejected(f"the run is {control.state.name.lower()}, not paused")
        # Mid-way through a StepRequest budget the run is still running: resuming drops the budget,
        # so the loop runs on instead of pausing when the budget would have been spent.
        control.pending_steps = 0
        control.leave_pause(ctx, "resumed on request")
        return ctx.step

    def describe(self, result: Any) -> str:
        return f"resumed at step {result}"


class Stop(Command):
    name = "stop"

    def __init__(self, skip_test: bool = False) -> None:
        self.skip_test = skip_test

    def apply(self, ctx: "LoopContext") -> int:
        control = ctx.run.control
        control.stop_requested = True
        control.skip_test = self.skip_test
        return ctx.step

    def describe(self, result: Any) -> str:
        return f"stopping after step {result}"


MAX_STEPS = 2**53 - 1  # exact in JSON and in a JavaScript client


class RunSteps(Command):
    name = "step"

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def check(self, control: "Control") -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise InvalidArgument(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")

    def apply(self, ctx: "LoopContext") -> int:
        control = ctx.run.control
        control.pending_steps = self.steps
        control.leave_pause(ctx, f"running {self.steps} step(s)")
        return ctx.step

    def describe(self, result: Any) -> str:
        return f"running {self.steps} step(s) from step {result}, then pausing"


class RunTest(Command):
    name = "test"

    def __init__(self, stay_paused: bool = False, split: str = "test") -> None:
        self.stay_paused = stay_paused
        self.split = split

    def check(self, control: "Control") -> None:
        if not control.has_loader(self.split):
            raise FailedPrecondition(
                f"this run has no {self.split}_loader: pass {self.split}_loader= to Trainer.fit to test on demand"
            )

    def apply(self, ctx: "LoopContext") -> Any:
        control = ctx.run.control
        was_paused = control.state is RunState.PAUSED
        result = ctx.evaluate(self.split, "request")
        if self.stay_paused or was_paused:
            control.pending_steps = 0
            control.enter_pause(ctx, f"{self.split} finished")
        return result

    def describe(self, result: Any) -> str:
        return f"{result.split} loss {result.loss:.6g} over {result.samples} samples"


class SetHyperparameters(Command):
    name = "set_hyperparameters"

    def __init__(self, values: dict[str, float], groups: list[int] | None = None) -> None:
        self.values = dict(values)
        self.groups = list(groups or [])
        self._targets: list[int] = []

    def check(self, control: "Control") -> None:
        self._targets = hyperparams.validate(control.optimizer, self.values, self.groups)

    def apply(self, ctx: "LoopContext") -> list:
        targets = hyperparams.validate(ctx.optimizer, self.values, self.groups)
        hyperparams.apply(ctx.optimizer, self.values, targets, ctx.scheduler)
        return hyperparams.read_groups(ctx.optimizer)

    def describe(self, result: Any) -> str:
        changes = ", ".join(f"{k}={v:g}" for k, v in self.values.items())
        groups = "all groups" if not self.groups else "groups " + ",".join(map(str, self.groups))
        return f"set {changes} on {groups}"
