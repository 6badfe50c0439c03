"""Activations: dead ReLU and saturated tanh units; hooks are gone afterwards."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_dataset, boring_setup


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_quiet_on_a_healthy_model_and_leaves_no_hooks(live_run, hc):
    model, opt, loss, loader = boring_setup()
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    findings = hc.run_checks(live, "activations", batches=3)
    assert hc.problems(findings) == []
    assert findings[0].evidence["modules"] == 1 and findings[0].evidence["batches"] == 3
    assert _hooks(model) == 0
    hc.stop(live)


def test_fires_on_dead_relus(live_run, hc):
    model, opt, loss, loader = boring_setup()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    bad = hc.problems(hc.run_checks(live, "activations"))
    assert len(bad) == 1 and bad[0].subject == "1" and bad[0].severity == "ERROR" and "dead" in bad[0].message
    assert bad[0].evidence["fraction"] == 1.0 and bad[0].evidence["units"] == 32
    assert _hooks(model) == 0
    hc.stop(live)


def test_fires_on_saturated_tanh(live_run, hc):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight.mul_(1000.0)
    loader = DataLoader(boring_dataset(128), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    loader)
    bad = hc.problems(hc.run_checks(live, "activations"))
    assert len(bad) == 1 and bad[0].subject == "1" and "saturated" in bad[0].message
    assert bad[0].evidence["fraction"] >= 0.5
    hc.stop(live)
