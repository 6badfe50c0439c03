"""Every merge runs on the training thread between steps: it must give the run's RNG back untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.merges.adapters import adapter_merge
from onthefly.lab.merges.average import uniform_merge
from onthefly.lab.merges.distill import distill_merge
from onthefly.lab.merges.fisher import fisher_merge
from onthefly.lab.train_steps import DataSource, clone_model, replay


@pytest.mark.parametrize("merge", ["uniform", "swa", "fisher", "distill", "adapters"])
def test_merge_leaves_the_global_rng_as_it_found_it(merge):
    torch.manual_seed(0)
    data = DataSource(boring_dataset(128, seed=1), batch_size=16)
    generalist = BoringModel()  # dropout: training a copy draws random numbers
    specialist = clone_model(generalist)
    optimizer = torch.optim.SGD(generalist.parameters(), lr=0.05, momentum=0.9)
    region, rest = np.arange(32), np.arange(32, 128)
    common = dict(optimizer=optimizer, data=data, ledger=Ledger(96), seed=3)
    mix = replay(region, rest, 0.5)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    if merge in ("uniform", "swa"):
        uniform_merge(generalist, [specialist], mix=mix, loss_fn=nn.CrossEntropyLoss(), swa=merge == "swa", **common)
    elif merge == "fisher":
        fisher_merge(generalist, [specialist], mix=mix, loss_fn=nn.CrossEntropyLoss(), n_samples=16, **common)
    elif merge == "distill":
        distill_merge(generalist, [specialist], mix=mix, loss_fn=nn.CrossEntropyLoss(), **common)
    else:
        adapter_merge(generalist, [region], train_indices=np.arange(128), loss_fn=nn.CrossEntropyLoss(), **common)
    assert common["ledger"].spent == 96
    assert torch.equal(torch.get_rng_state(), before)
