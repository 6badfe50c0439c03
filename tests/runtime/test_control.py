"""Control.boundary on the training thread, driven directly (the servicers and loops are tested elsewhere)."""

import torch

from onthefly.runtime.context import LoopContext
from onthefly.runtime.events import RunState
from onthefly.runtime.hooks import RunHook
from onthefly.runtime.run import Run
from onthefly.runtime.steering import Pause, RunSteps


def _ctx() -> LoopContext:
    run = Run("test", "control")
    model = torch.nn.Linear(2, 1)
    ctx = LoopContext(run, model, torch.optim.SGD(model.parameters(), lr=0.1), None, torch.device("cpu"), [])
    run.control.ctx = ctx
    run.control.state = RunState.RUNNING
    return ctx


def test_a_distributed_boundary_returns_at_a_pause_before_the_step_queued_behind_it():
    ctx = _ctx()
    control = ctx.run.control
    pause, steps = control.submit(Pause()), control.submit(RunSteps(2))
    assert control.boundary(ctx, max_wait=0) is False
    assert control.state is RunState.PAUSED and pause.done and not steps.done  # peers hear of the pause first
    assert control.boundary(ctx, max_wait=0) is False
    assert control.state is RunState.RUNNING and steps.done and control.pending_steps == 2
    ctx.run.bus.close()


def test_a_local_boundary_applies_everything_queued_in_one_call():
    ctx = _ctx()
    control = ctx.run.control
    pause, steps = control.submit(Pause()), control.submit(RunSteps(2))
    assert control.boundary(ctx) is False
    assert pause.done and steps.done and control.state is RunState.RUNNING
    ctx.run.bus.close()


class _OnPause(RunHook):
    """Leaves a task for each pause, as the Sessions hook does with its pause checkpoint."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.ran = seconds, []

    def on_pause(self, ctx) -> None:
        ctx.run.control.when_pause_settles(lambda: self.ran.append(ctx.run.control.state), self.seconds)


def test_a_task_left_for_a_pause_runs_once_the_pause_has_lasted():
    ctx = _ctx()
    control, hook = ctx.run.control, _OnPause(1e-9)
    ctx.run.hooks.add(hook)
    pause = control.submit(Pause())
    assert control.boundary(ctx, max_wait=0) is False and pause.done
    assert hook.ran == [RunState.PAUSED]  # on the training thread, while still paused
    assert control.boundary(ctx, max_wait=0) is False and hook.ran == [RunState.PAUSED]  # once per pause
    ctx.run.bus.close()


def test_a_pause_that_ends_before_it_settles_drops_its_task():
    ctx = _ctx()
    control, hook = ctx.run.control, _OnPause(1e-9)
    ctx.run.hooks.add(hook)
    pause, steps = control.submit(Pause()), control.submit(RunSteps(1))
    assert control.boundary(ctx) is False  # both applied in one call: the pause ended at once
    assert pause.done and steps.done and control.state is RunState.RUNNING and hook.ran == []
    control.step_done(ctx)  # the step budget is spent: the next pause, which lasts
    assert control.state is RunState.PAUSED
    assert control.boundary(ctx, max_wait=0) is False
    assert hook.ran == [RunState.PAUSED]  # this pause's task only; the first one's was dropped
    ctx.run.bus.close()


def test_a_task_for_no_time_at_all_runs_at_once_ahead_of_what_is_queued_behind_the_pause():
    ctx = _ctx()
    control, hook = ctx.run.control, _OnPause(0.0)
    ctx.run.hooks.add(hook)
    control.submit(Pause())
    control.submit(RunSteps(1))
    assert control.boundary(ctx) is False and control.state is RunState.RUNNING
    assert hook.ran == [RunState.PAUSED]  # ran inside the pause, before the queued steps resumed the run
    ctx.run.bus.close()
