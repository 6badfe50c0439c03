"""Same seed => bit-identical weights with OnTheFly attached or not, paused and tested mid-run or not."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from support import wait_until
from onthefly import Trainer
from onthefly.demos.boring import boring_dataset, boring_setup
from onthefly.v1 import control_pb2, telemetry_pb2


def plain_loop(model, optimizer, loss_fn, loader, epochs, scheduler=None):
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return model


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_bit_identical_without_clients():
    model_a, opt_a, loss_a, loader_a = boring_setup(seed=7)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
    plain_loop(model_a, opt_a, loss_a, loader_a, epochs=3, scheduler=sched_a)

    model_b, opt_b, loss_b, loader_b = boring_setup(seed=7)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.5)
    Trainer("t", "equal", max_epochs=3, port=0, verbose=False).fit(
        model_b, opt_b, loss_b, loader_b, scheduler=sched_b,
        val_loader=DataLoader(boring_dataset(64, seed=1), batch_size=32))
    assert _same(model_a, model_b)


def test_bit_identical_when_paused_tested_and_streamed_mid_run(live_run):
    model_a, opt_a, loss_a, loader_a = boring_setup(seed=11)
    plain_loop(model_a, opt_a, loss_a, loader_a, epochs=2)

    model_b, opt_b, loss_b, loader_b = boring_setup(seed=11)
    test_loader = DataLoader(boring_dataset(64, seed=2), batch_size=16, shuffle=True)  # shuffling uses RNG too
    run = live_run(Trainer("t", "paused", max_epochs=2, port=0, start_paused=True, verbose=False),
                   model_b, opt_b, loss_b, loader_b, test_loader=test_loader)
    stream = run.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())
    run.client.control.Step(control_pb2.StepRequest(steps=5))
    wait_until(lambda: run.client.control.GetStatus(control_pb2.GetStatusRequest()).status.step == 5, what="5 steps")
    run.client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))
    run.client.control.Resume(control_pb2.ResumeRequest())
    run.client.control.Pause(control_pb2.PauseRequest())
    run.client.control.RunTest(control_pb2.RunTestRequest())
    run.client.control.Resume(control_pb2.ResumeRequest())
    run.join()
    assert sum(len(frame.events) for frame in stream) > 0
    assert _same(model_a, model_b)
