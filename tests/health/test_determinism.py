"""Determinism: an actively replayed step matches bit for bit, unless the model has its own randomness."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from onthefly.demos.boring import BoringModel, boring_dataset, boring_setup


class PrivateNoise(nn.Module):
    """Adds noise from its own Generator: invisible to torch's RNG state, so a replay differs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = BoringModel()
        self.generator = torch.Generator().manual_seed(1)

    def forward(self, x):
        return self.body(x + 0.1 * torch.randn(x.shape, generator=self.generator))


def test_quiet_with_dropout_because_rng_state_is_replayed(live_run, hc):
    model, opt, loss, loader = boring_setup()  # BoringModel has dropout: it draws from torch's RNG
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    findings = hc.run_checks(live, "determinism")
    assert hc.problems(findings) == []
    replay = next(f for f in findings if "replayed" in f.message)
    assert replay.evidence["grad_hash_match"] == 1 and replay.evidence["loss_difference"] == 0
    assert any(f.subject == "settings" for f in findings)  # the settings are always reported
    hc.stop(live)


def test_fires_on_randomness_outside_torchs_rng(live_run, hc):
    torch.manual_seed(0)
    model = PrivateNoise()
    loader = DataLoader(boring_dataset(64), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    loader)
    bad = hc.problems(hc.run_checks(live, "determinism"))
    assert len(bad) == 1 and bad[0].severity == "WARNING" and "cannot be reproduced" in bad[0].message
    assert bad[0].evidence["grad_hash_match"] == 0 and bad[0].evidence["max_grad_difference"] > 0
    hc.stop(live)
