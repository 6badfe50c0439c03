"""Rank-4 LoRA adapters per region, fused or gated (onthefly.lab.merges.adapters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.cluster import KMeans
from torch.utils.data import TensorDataset

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.features import fit_space
from onthefly.lab.merges.adapters import LoRALinear, adapter_merge, add_adapters
from onthefly.lab.merges.result import state_dict_hash
from onthefly.lab.routing import RoutedModel, router_from_space
from onthefly.lab.scoring import embed
from onthefly.lab.train_steps import DataSource, clone_model, train_steps, uniform
from onthefly.runtime.errors import InvalidArgument


def _setup():
    """A trained generalist, and a region (samples 0..59) whose labels follow another rule."""
    torch.manual_seed(0)
    base = boring_dataset(300, seed=2)
    x, y = base.tensors[0].clone(), base.tensors[1].clone()
    y[:60] = (y[:60] + 1) % 3
    data = DataSource(TensorDataset(x, y), batch_size=20)
    generalist = BoringModel(dropout=0.0)
    optimizer = torch.optim.Adam(generalist.parameters(), lr=1e-2)
    train_steps(generalist, optimizer, data, uniform(np.arange(60, 300)), sample_gradients=2400, ledger=Ledger(),
                seed=0, loss_fn=nn.CrossEntropyLoss())
    return data, generalist, optimizer


def test_adapters_start_exactly_at_the_generalist():
    torch.manual_seed(0)
    model = BoringModel(dropout=0.0).eval()
    adapted = clone_model(model)
    names = add_adapters(adapted, rank=4)
    assert names == ["0", "3"] and isinstance(adapted[0], LoRALinear)
    assert [n for n, p in adapted.named_parameters() if p.requires_grad] == [
        "0.lora_a", "0.lora_b", "3.lora_a", "3.lora_b"]
    x = torch.randn(5, 16)
    assert torch.equal(adapted(x), model(x))


def test_fused_adapters_learn_the_region_within_exactly_the_budget():
    data, generalist, optimizer = _setup()
    before = state_dict_hash(generalist)
    ledger = Ledger(1200, "adapters")
    result = adapter_merge(generalist, [np.arange(60)], optimizer=optimizer, data=data,
                           train_indices=np.arange(300), ledger=ledger, seed=0, loss_fn=nn.CrossEntropyLoss())
    assert ledger.spent == 1200 and result.sample_gradients == 1200 and result.kind == "adapters-fused"
    assert state_dict_hash(generalist) == before
    fused = result.model
    assert type(fused) is type(generalist) and result.state_hash == state_dict_hash(fused)
    # Only the Linear weights moved, each by a matrix of rank <= 4; biases are the generalist's.
    assert torch.equal(fused[0].bias, generalist[0].bias) and torch.equal(fused[3].bias, generalist[3].bias)
    assert torch.linalg.matrix_rank(fused[0].weight - generalist[0].weight) <= 4
    x, y = data.dataset.tensors
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        assert loss(fused(x[:60]), y[:60]) < 0.8 * loss(generalist(x[:60]), y[:60])
    with pytest.raises(InvalidArgument, match="gated adapters need"):
        adapter_merge(generalist, [np.arange(60)], optimizer=optimizer, data=data, train_indices=np.arange(300),
                      ledger=Ledger(100), seed=0, loss_fn=nn.CrossEntropyLoss(), mode="gated")


def test_gated_adapters_are_a_routed_model():
    data, generalist, optimizer = _setup()
    x = data.dataset.tensors[0]
    emb = embed(generalist, x)
    space = fit_space(x.numpy(), emb)
    km = KMeans(n_clusters=4, n_init=4, random_state=0).fit(space.transform(x.numpy(), emb))
    cluster_expert = np.zeros(4, dtype=np.int64)
    cluster_expert[[0, 2]] = [1, 2]
    router = router_from_space(space, km.cluster_centers_, cluster_expert)
    regions = [np.flatnonzero(km.labels_ == 0), np.flatnonzero(km.labels_ == 2)]
    ledger = Ledger(801)
    result = adapter_merge(generalist, regions, optimizer=optimizer, data=data, train_indices=np.arange(300),
                           ledger=ledger, seed=0, loss_fn=nn.CrossEntropyLoss(), mode="gated", regions=router)
    assert ledger.spent == 801 and result.details["adapter_sample_gradients"] == 801
    assert isinstance(result.model, RoutedModel) and len(result.model.experts) == 3
    route = result.model.route(x).numpy()
    assert np.array_equal(route, cluster_expert[km.predict(space.transform(x.numpy(), emb))])
