"""Numerics: NaN/Inf in parameters, gradients, buffers and the loss; the opt-in guard."""

from __future__ import annotations

import math

import torch
from torch import nn

from onthefly.demos.boring import boring_setup
from onthefly.health import NumericsGuard
from onthefly.v1 import control_pb2, run_pb2, telemetry_pb2


def test_quiet_on_a_healthy_run(live_run, hc):
    model, opt, loss, loader = boring_setup()
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    assert hc.problems(hc.run_checks(live, "numerics")) == []
    hc.step_and_wait(live, 3)
    findings = hc.run_checks(live, "numerics")
    assert hc.problems(findings) == [] and "no NaN or Inf" in findings[0].message
    hc.stop(live)


def test_fires_on_nan_weights_and_an_inf_buffer(live_run, hc):
    model, opt, loss, loader = boring_setup()
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    model.register_buffer("scale", torch.tensor([1.0, math.inf]))
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    bad = {f.subject: f for f in hc.problems(hc.run_checks(live, "numerics"))}
    assert bad["0.weight"].severity == "ERROR" and bad["0.weight"].evidence["nan_count"] == 1
    assert bad["scale"].severity == "ERROR" and bad["scale"].evidence["inf_count"] == 1
    assert bad["loss"].severity == "ERROR"  # probed before any step: NaN weights give a NaN loss
    hc.stop(live)


def _loss_going_nan_at(call: int):
    calls = [0]

    def loss_fn(pred, target):
        calls[0] += 1
        value = nn.functional.cross_entropy(pred, target)
        return value * math.nan if calls[0] == call else value

    return loss_fn


def test_fires_on_a_diverged_step_without_the_guard(live_run, hc, slow_pump):
    model, opt, _, loader = boring_setup()
    live = live_run(hc.paused_trainer(per_sample_loss=False), model, opt, _loss_going_nan_at(2), loader)
    hc.step_and_wait(live, 2)
    # The monitor is fed by the bus's pump thread (slowed to an hour here): the check drains the bus
    # first, so the step that just diverged is seen, not mistaken for "before any step".
    bad = {f.subject: f for f in hc.problems(hc.run_checks(live, "numerics"))}
    assert bad["loss"].severity == "ERROR" and "loss of the last step was nan" in bad["loss"].message.lower()
    assert bad["loss"].evidence["nonfinite_losses"] == 1
    assert bad["0.weight"].severity == "ERROR"  # the optimizer wrote the NaN gradients into the weights
    hc.stop(live)


def test_guard_skips_the_step_keeps_a_snapshot_and_pauses(live_run, hc, tmp_path):
    model, opt, _, loader = boring_setup()
    guard = NumericsGuard(snapshot_dir=tmp_path)
    live = live_run(hc.paused_trainer(per_sample_loss=False, hooks=[guard]), model, opt, _loss_going_nan_at(4), loader)
    events = live.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(kinds=[telemetry_pb2.EVENT_KIND_LIFECYCLE]))
    live.client.control.Resume(control_pb2.ResumeRequest())
    paused = None
    for frame in events:
        paused = next((e.lifecycle for e in frame.events if e.lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_PAUSED
                       and "guard" in e.lifecycle.message), None)
        if paused is not None:
            break
    events.cancel()
    assert "non-finite loss" in paused.message and "step 4" in paused.message
    status = live.client.control.GetStatus(control_pb2.GetStatusRequest()).status
    assert status.state == run_pb2.RUN_STATE_PAUSED and status.step == 4
    # The bad step never reached the weights: they equal the snapshot and are finite.
    assert guard.trips == 1 and guard.last_trip.step == 4
    for name, value in model.state_dict().items():
        assert torch.equal(value, guard.snapshot["model"][name]) and torch.isfinite(value).all()
    saved = torch.load(tmp_path / "guard-step4.pt", weights_only=True)
    assert saved["step"] == 3 and torch.equal(saved["model"]["0.weight"], model[0].weight.detach())
    trip = [f for f in hc.run_checks(live, "numerics") if f.subject == "guard"]
    assert trip and trip[0].severity == "WARNING" and trip[0].evidence["trips"] == 1
    hc.step_and_wait(live, 3)  # a person resumes: training goes on from the good weights
    assert all(torch.isfinite(p).all() for p in model.parameters())
    hc.stop(live)


def test_guard_is_quiet_on_a_healthy_run(live_run, hc):
    model, opt, loss, loader = boring_setup()
    guard = NumericsGuard()
    live = live_run(hc.paused_trainer(hooks=[guard]), model, opt, loss, loader)
    hc.step_and_wait(live, 5)
    assert guard.trips == 0 and guard.snapshot is None
    hc.stop(live)
