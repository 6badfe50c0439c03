"""RunHook: a flat base class of no-op hooks that features (sessions, health guard) override.

The training loop calls every registered hook at these points, on the training thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.events import EvalResult


class RunHook:
    """Override what you need; every hook runs on the training thread and must be quick."""

    def on_fit_start(self, ctx: "LoopContext") -> None:
        """Called once before the first step, after the server is up."""

    def on_epoch_start(self, ctx: "LoopContext") -> None:
        """Called at the start of every training epoch, before its iterator is created."""

    def on_before_optimizer_step(self, ctx: "LoopContext", loss: Any) -> bool:
        """Called after backward, before optimizer.step(); return False to skip this step."""
        return True

    def on_step_end(self, ctx: "LoopContext") -> None:
        """Called after every optimizer step (ctx.step already counts it)."""

    def on_pause(self, ctx: "LoopContext") -> None:
        """Called when the loop enters the paused state."""

    def on_eval_end(self, ctx: "LoopContext", result: "EvalResult") -> None:
        """Called after every validation or test pass."""

    def on_fit_end(self, ctx: "LoopContext", error: BaseException | None) -> None:
        """Called once when fit ends, with the exception if it failed."""


class HookList(RunHook):
    """Fans each hook out to a list of hooks, in order."""

    def __init__(self, hooks: list[RunHook] | None = None) -> None:
        self.hooks: list[RunHook] = list(hooks or [])

    def add(self, hook: RunHook) -> None:
        self.hooks.append(hook)

    def on_fit_start(self, ctx):
        for h in self.hooks:
            h.on_fit_start(ctx)

    def on_epoch_start(self, ctx):
        for h in self.hooks:
            h.on_epoch_start(ctx)

    def on_before_optimizer_step(self, ctx, loss):
        proceed = True
        for h in self.hooks:
            proceed = h.on_before_optimizer_step(ctx, loss) and proceed
        return proceed

    def on_step_end(self, ctx):
        for h in self.hooks:
            h.on_step_end(ctx)

    def on_pause(self, ctx):
        for h in self.hooks:
            h.on_pause(ctx)

    def on_eval_end(self, ctx, result):
        for h in self.hooks:
            h.on_eval_end(ctx, result)

    def on_fit_end(self, ctx, error):
        for h in self.hooks:
            h.on_fit_end(ctx, error)
