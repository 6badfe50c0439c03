"""Control.boundary on the training thread, driven directly (the servicers and loops are tested elsewhere)."""

import torch

from onthefly.runtime.context import LoopContext
from onthefly.runtime.events import RunState
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
