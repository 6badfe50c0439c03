"""Normalised diagonal-Fisher averaging (onthefly.lab.merges.fisher)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.merges.average import average_state_dicts
from onthefly.lab.merges.fisher import diagonal_fisher, fisher_average, fisher_merge, normalize_fisher
from onthefly.lab.merges.result import state_dict_hash
from onthefly.lab.train_steps import DataSource, clone_model, replay, train_steps, uniform
from onthefly.runtime.errors import InvalidArgument


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    other = clone_model(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return other


def test_diagonal_fisher_is_the_mean_squared_per_sample_gradient():
    torch.manual_seed(0)
    model = BoringModel()  # dropout: the Fisher runs in eval mode, so it must match eval-mode gradients
    data = DataSource(boring_dataset(64, seed=2), batch_size=16)
    ledger = Ledger(100)
    fisher = diagonal_fisher(model, data, np.arange(40), n_samples=40, loss_fn=nn.CrossEntropyLoss(), ledger=ledger)
    assert ledger.spent == 40 and model.training
    model.eval()
    expected = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    for i in range(40):
        x, y = data.dataset[i]
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        for k, p in model.named_parameters():
            expected[k] += p.grad ** 2 / 40
    for k in expected:
        assert torch.allclose(fisher[k], expected[k], rtol=1e-4, atol=1e-7), k
    sub = diagonal_fisher(model, data, np.arange(64), n_samples=8, seed=1, ledger=ledger)
    assert ledger.spent == 48 and set(sub) == set(fisher)


def test_unequal_fisher_changes_the_result_and_equal_fisher_is_the_uniform_average():
    torch.manual_seed(0)
    a = BoringModel()
    b = _perturbed(a, 1)
    states = [a.state_dict(), b.state_dict()]
    ones = {k: torch.ones_like(v) for k, v in a.named_parameters()}
    equal, shares = fisher_average(states, [ones, ones])
    uniform_avg = average_state_dicts(states)
    for k in ones:
        assert torch.allclose(equal[k], uniform_avg[k], atol=1e-6)
    assert shares == pytest.approx([0.5, 0.5])
    # A is 100x more certain about the first layer's weights; B about everything else.
    fa = {k: torch.full_like(v, 100.0 if k == "0.weight" else 1.0) for k, v in a.named_parameters()}
    fb = {k: torch.full_like(v, 1.0 if k == "0.weight" else 100.0) for k, v in a.named_parameters()}
    merged, _ = fisher_average(states, [fa, fb])
    assert not torch.allclose(merged["0.weight"], uniform_avg["0.weight"], atol=1e-3)
    assert (merged["0.weight"] - states[0]["0.weight"]).abs().max() < 0.1 * (
        states[1]["0.weight"] - states[0]["0.weight"]).abs().max()
    assert (merged["3.bias"] - states[1]["3.bias"]).abs().max() < 0.1 * (
        states[1]["3.bias"] - states[0]["3.bias"]).abs().max()


def test_normalisation_keeps_a_confident_specialist_from_vanishing():
    torch.manual_seed(0)
    generalist = BoringModel()
    specialist = _perturbed(generalist, 2)
    states = [generalist.state_dict(), specialist.state_dict()]
    g = torch.Generator().manual_seed(3)
    shape = {k: torch.rand(v.shape, generator=g) for k, v in generalist.named_parameters()}
    confident = {k: v * 1e-7 for k, v in shape.items()}  # same shape of certainty, tiny gradients
    collapsed, raw_shares = fisher_average(states, [shape, confident], normalize=False)
    assert raw_shares[1] < 1e-3
    assert torch.allclose(collapsed["0.weight"], states[0]["0.weight"], atol=1e-4)  # silently the generalist
    merged, shares = fisher_average(states, [shape, confident])
    assert shares == pytest.approx([0.5, 0.5], abs=1e-3)
    assert not torch.allclose(merged["0.weight"], states[0]["0.weight"], atol=1e-3)
    with pytest.raises(InvalidArgument, match="Fisher is zero"):
        normalize_fisher({k: torch.zeros_like(v) for k, v in shape.items()})


def test_fisher_merge_spends_exactly_its_budget_on_real_forks():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(256, seed=1), batch_size=16)
    generalist = BoringModel()
    optimizer = torch.optim.Adam(generalist.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    train_steps(generalist, optimizer, data, uniform(data.all_indices()), sample_gradients=512, ledger=Ledger(),
                seed=0, loss_fn=loss_fn)
    region, rest = np.arange(0, 64), np.arange(64, 256)
    specialist = clone_model(generalist)
    train_steps(specialist, torch.optim.Adam(specialist.parameters(), lr=1e-2), data, replay(region, rest, 0.2),
                sample_gradients=256, ledger=Ledger(), seed=1, loss_fn=loss_fn)
    before = (state_dict_hash(generalist), state_dict_hash(specialist))
    ledger = Ledger(400, "merge")
    result = fisher_merge(generalist, [specialist], region_indices=[region], generalist_indices=rest,
                          optimizer=optimizer, data=data, mix=replay(region, rest, 0.5), ledger=ledger, seed=0,
                          loss_fn=loss_fn, n_samples=32)
    assert ledger.spent == 400 and result.sample_gradients == 400
    assert result.details["fisher_sample_gradients"] == 64 and result.details["finetune_sample_gradients"] == 336
    assert len(result.details["shares"]) == 2 and min(result.details["shares"]) > 0.05
    assert result.state_hash == state_dict_hash(result.model)
    assert (state_dict_hash(generalist), state_dict_hash(specialist)) == before
    # The defaults read the mix: specialists' Fisher on its first pool (the region), the generalist's on the rest.
    default = fisher_merge(generalist, [specialist], optimizer=optimizer, data=data, mix=replay(region, rest, 0.5),
                           ledger=Ledger(400), seed=0, loss_fn=loss_fn, n_samples=32)
    assert default.state_hash == result.state_hash
    with pytest.raises(InvalidArgument, match="Fisher alone needs"):
        fisher_merge(generalist, [specialist], region_indices=[region], generalist_indices=rest, optimizer=optimizer,
                     data=data, mix=replay(region, rest, 0.5), ledger=Ledger(50), seed=0, loss_fn=loss_fn)
