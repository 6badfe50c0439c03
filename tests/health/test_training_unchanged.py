"""Checks run mid-run leave the training numbers bit-identical (RNG, grads, buffers and modes restored)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.v1 import control_pb2


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(BoringModel(), nn.BatchNorm1d(3))  # dropout draws RNG, BatchNorm keeps running stats
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(boring_dataset(128), batch_size=16, shuffle=True)
    return model, optimizer, nn.CrossEntropyLoss(), loader


def test_all_checks_mid_run_do_not_change_the_weights(live_run, hc):
    model, opt, loss, loader = _setup()
    live = live_run(Trainer("health", "checked", max_steps=12, seed=0, port=0, start_paused=True, verbose=False),
                    model, opt, loss, loader)
    hc.step_and_wait(live, 5)
    findings = hc.run_checks(live)
    assert {f.check for f in findings} == {"numerics", "gradients", "activations", "throughput", "determinism",
                                           "configuration", "checkpoints"}
    hc.step_and_wait(live, 4)  # crosses an epoch boundary (8 batches per epoch)
    hc.run_checks(live, "gradients", "determinism", "activations")
    live.client.control.Resume(control_pb2.ResumeRequest())
    assert live.join().steps == 12

    ref_model, ref_opt, ref_loss, ref_loader = _setup()
    Trainer("health", "plain", max_steps=12, seed=0, serve=False, verbose=False).fit(ref_model, ref_opt, ref_loss,
                                                                                   ref_loader)
    for (name, a), b in zip(model.state_dict().items(), ref_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after health checks"
