"""Configuration: eval mode, scheduler/optimizer mismatch, learning rates, loader settings that hurt."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_dataset, boring_setup


def test_quiet_on_a_sensible_setup(live_run, hc):
    model, opt, loss, loader = boring_setup()
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    live = live_run(hc.paused_trainer(), model, opt, loss, loader, scheduler=scheduler)
    findings = hc.run_checks(live, "configuration")
    assert hc.problems(findings) == [] and "look sensible" in findings[-1].message
    hc.stop(live)


def test_fires_on_eval_mode_foreign_scheduler_high_adam_lr_and_no_shuffle(live_run, hc):
    model, _, loss, _ = boring_setup()
    model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(other, max_lr=0.1, total_steps=10)
    loader = DataLoader(boring_dataset(64), batch_size=16, shuffle=False)
    live = live_run(hc.paused_trainer(max_steps=40, max_epochs=None), model, optimizer, loss, loader,
                    scheduler=scheduler)
    bad = hc.problems(hc.run_checks(live, "configuration"))
    by_subject = {}
    for f in bad:
        by_subject.setdefault(f.subject, []).append(f)
    assert by_subject["model"][0].severity == "ERROR" and "eval mode" in by_subject["model"][0].message
    scheduler_findings = " | ".join(f.message for f in by_subject["scheduler"])
    assert "different optimizer" in scheduler_findings and "built for 10 steps but the run plans 40" in scheduler_findings
    assert by_subject["param_groups[0].lr"][0].evidence["lr"] == 0.5
    assert "does not shuffle" in by_subject["train_loader.sampler"][0].message
    hc.stop(live)


def test_fires_on_workerless_slow_loading_and_a_one_sample_batchnorm_batch(live_run, hc):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    loader = DataLoader(hc.SlowDataset(n=33), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    loader)
    bad = {f.subject: f for f in hc.problems(hc.run_checks(live, "configuration"))}
    assert bad["train_loader.num_workers"].severity == "WARNING"
    assert bad["train_loader.num_workers"].evidence["load_ms"] > 16 * 8 * 0.9
    assert bad["train_loader.drop_last"].severity == "ERROR" and "drop_last=True" in bad["train_loader.drop_last"].message
    hc.stop(live)
