"""Uniform / SWA averaging of forks and BatchNorm recalibration (onthefly.lab.merges.average)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.lab.merges.average import (average_models, average_state_dicts, recalibrate_batchnorm,
                                         uniform_merge)
from onthefly.lab.merges.result import state_dict_hash
from onthefly.lab.train_steps import DataSource, clone_model, replay
from onthefly.runtime.errors import InvalidArgument


class NormNet(nn.Module):
    """A model whose constructor needs arguments, with a BatchNorm layer."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, 24), nn.BatchNorm1d(24), nn.ReLU())
        self.head = nn.Linear(24, classes)

    def forward(self, x):
        return self.head(self.body(x))


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    other = clone_model(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return other


def test_average_is_the_elementwise_mean_and_leaves_members_alone():
    torch.manual_seed(0)
    a = BoringModel()
    b = _perturbed(a, 1)
    ha, hb = state_dict_hash(a), state_dict_hash(b)
    merged = average_models([a, b])
    for (name, pa), pb, pm in zip(a.named_parameters(), b.parameters(), merged.parameters()):
        assert torch.allclose(pm, (pa + pb) / 2, atol=1e-6), name
    assert state_dict_hash(a) == ha and state_dict_hash(b) == hb
    assert merged is not a and state_dict_hash(merged) not in (ha, hb)
    weighted = average_state_dicts([a.state_dict(), b.state_dict()], [3.0, 1.0])
    w0 = a.state_dict()["0.weight"] * 0.75 + b.state_dict()["0.weight"] * 0.25
    assert torch.allclose(weighted["0.weight"], w0, atol=1e-6)


def test_average_refuses_models_of_different_architectures():
    with pytest.raises(InvalidArgument, match="same entries"):
        average_models([BoringModel(), NormNet(16, 3)])
    with pytest.raises(InvalidArgument, match="shape"):
        average_models([BoringModel(hidden=8), BoringModel(hidden=16)])
    with pytest.raises(InvalidArgument, match="weights"):
        average_models([BoringModel(), BoringModel()], weights=[1.0, -1.0])


def test_batchnorm_recalibration_recomputes_running_stats_from_data():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(200, seed=3), batch_size=32)
    a = NormNet(16, 3)
    b = _perturbed(a, 2)
    merged = average_models([a, b])
    stale_mean = merged.body[1].running_mean.clone()
    forwarded = recalibrate_batchnorm(merged, data, np.arange(200))
    assert forwarded == 200
    bn = merged.body[1]
    assert not torch.allclose(bn.running_mean, stale_mean)
    # The running statistics are now those of the layer's real input, every batch of 32 weighted equally.
    with torch.no_grad():
        pre = merged.body[0](data.dataset.tensors[0]).split(32)
    assert torch.allclose(bn.running_mean, torch.stack([b.mean(0) for b in pre]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([b.var(0) for b in pre]).mean(0), atol=1e-4)
    assert bn.momentum == 0.1  # restored
    assert merged.training and bn.training  # the model was in train mode before and is again
    merged.eval()
    recalibrate_batchnorm(merged, data, np.arange(200))
    assert not merged.training and not bn.training


def test_uniform_merge_spends_exactly_its_budget_and_reports_its_hash():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(256, seed=1), batch_size=16)
    generalist = NormNet(16, 3)
    optimizer = torch.optim.Adam(generalist.parameters(), lr=1e-3)
    specialists = [_perturbed(generalist, 5), _perturbed(generalist, 6)]
    before = [state_dict_hash(m) for m in [generalist, *specialists]]
    ledger = Ledger(100, "merge")
    mix = replay(np.arange(0, 60), np.arange(60, 256), 0.5)
    result = uniform_merge(generalist, specialists, optimizer=optimizer, data=data, mix=mix, ledger=ledger,
                           seed=0, loss_fn=nn.CrossEntropyLoss(), factory=lambda: NormNet(16, 3))
    assert ledger.spent == 100 and result.sample_gradients == 100
    assert result.forward_samples == 2 * 256 and ledger.forward_samples == 2 * 256
    assert result.state_hash == state_dict_hash(result.model)
    assert [state_dict_hash(m) for m in [generalist, *specialists]] == before
    assert isinstance(result.model, NormNet) and result.kind == "uniform"

    swa = uniform_merge(generalist, specialists, optimizer=optimizer, data=data, mix=mix, ledger=Ledger(64),
                        seed=0, loss_fn=nn.CrossEntropyLoss(), swa=True)
    assert swa.kind == "swa" and swa.sample_gradients == 64 and swa.state_hash != result.state_hash

    with pytest.raises(BudgetExceeded):
        uniform_merge(generalist, specialists, optimizer=optimizer, data=data, mix=mix, ledger=Ledger(10),
                      seed=0, loss_fn=nn.CrossEntropyLoss(), budget=20)
    with pytest.raises(InvalidArgument, match="at least one specialist"):
        uniform_merge(generalist, [], optimizer=optimizer, data=data, mix=mix, ledger=Ledger(10), seed=0,
                      loss_fn=nn.CrossEntropyLoss())
