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


_HOOKS = ("on_fit_start", "on_epoch_start", "on_before_optimizer_step", "on_step_end", "on_pause",
          "on_eval_end", "on_fit_end")


class HookList(RunHook):
    """Fans each hook out to a list of hooks, in order.

    Each hook point calls only the hooks that override it: the per-step points run on the training
    thread every step, where each call to an inherited no-op would still cost its share."""

    def __init__(self, hooks: list[RunHook] | None = None) -> None:
        self.hooks: list[RunHook] = []
        self._calls: dict[str, tuple] = {name: () for name in _HOOKS}
        for hook in hooks or []:
            self.add(hook)

    def add(self, hook: RunHook) -> None:
        self.hooks.append(hook)
        self._calls = {name: tuple(getattr(h, name) for h in self.hooks
                                   if getattr(type(h), name, None) is not getattr(RunHook, name))
                       for name in _HOOKS}

    def on_fit_start(self, ctx):
        for call in self._calls["on_fit_start"]:
            call(ctx)

    def on_epoch_start(self, ctx):
        for call in self._calls["on_epoch_start"]:
            call(ctx)

    def on_before_optimizer_step(self, ctx, loss):
        proceed = True
        for call in self._calls["on_before_optimizer_step"]:
            proceed = call(ctx, loss) and proceed
        return proceed

    def on_step_end(self, ctx):
        for call in self._calls["on_step_end"]:
            call(ctx)

    def on_pause(self, ctx):
        for call in self._calls["on_pause"]:
            call(ctx)

    def on_eval_end(self, ctx, result):
        for call in self._calls["on_eval_end"]:
            call(ctx, result)

    def on_fit_end(self, ctx, error):
        for call in self._calls["on_fit_end"]:
            call(ctx, error)
