"""Gradients: exploding and vanishing layers, parameters without gradient or outside the optimizer."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly.demos.boring import BoringModel, boring_dataset, boring_setup


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = BoringModel()
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.body(x)


def test_quiet_on_a_healthy_model(live_run, hc):
    model, opt, loss, loader = boring_setup()
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    findings = hc.run_checks(live, "gradients")
    assert hc.problems(findings) == []
    summary = findings[-1]
    assert summary.evidence["layers"] == 2 and 0 < summary.evidence["total_grad_norm"] < 100
    assert set(k for k in summary.evidence if k.startswith("grad_norm/")) == {"grad_norm/0", "grad_norm/3"}
    assert all(p.grad is None for p in model.parameters())  # the probe left no gradients behind
    hc.stop(live)


def test_fires_on_exploding_gradients(live_run, hc):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(100)
    x = torch.randn(64, 16)
    loader = DataLoader(TensorDataset(x, torch.randn(64, 1)), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(), loader)
    bad = {f.subject: f for f in hc.problems(hc.run_checks(live, "gradients"))}
    assert bad["0"].severity == "ERROR" and "exploding" in bad["0"].message and bad["0"].evidence["grad_norm"] > 1e3
    hc.stop(live)


def test_fires_on_vanishing_gradients(live_run, hc):
    torch.manual_seed(0)
    layers = []
    for _ in range(12):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 3))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.5)
    loader = DataLoader(boring_dataset(64), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    loader)
    bad = {f.subject: f for f in hc.problems(hc.run_checks(live, "gradients"))}
    assert bad["0"].severity == "WARNING" and "vanishing" in bad["0"].message and bad["0"].evidence["grad_norm"] < 1e-7
    assert "24" not in bad  # the last layer still learns
    hc.stop(live)


def test_fires_on_unused_parameters_and_parameters_missing_from_the_optimizer(live_run, hc):
    torch.manual_seed(0)
    model = WithUnused()
    optimizer = torch.optim.SGD(list(model.body[3].parameters()) + list(model.unused.parameters()), lr=0.1)
    loader = DataLoader(boring_dataset(64), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, optimizer, nn.CrossEntropyLoss(), loader)
    findings = hc.problems(hc.run_checks(live, "gradients"))
    missing = next(f for f in findings if "not in the optimizer" in f.message)
    assert missing.severity == "ERROR" and missing.evidence["count"] == 2 and "body.0.weight" in missing.message
    unused = next(f for f in findings if "get no gradient" in f.message)
    assert unused.severity == "WARNING" and unused.evidence["count"] == 2 and "unused.weight" in unused.message
    hc.stop(live)
