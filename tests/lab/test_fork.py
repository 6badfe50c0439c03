"""Forks: real separate copies with forked optimizer state; the generalist is only read; lineage; budgets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.lab.fork import ForkSpec, fork_specialists, indices_hash, start_fork
from onthefly.lab.lineage import Lineage
from onthefly.lab.scoring import state_dict_hash
from onthefly.lab.train_steps import DataSource, train_steps, uniform
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument, NotFound


class Wide(nn.Module):
    """A model whose constructor needs arguments: forks come from a factory or deepcopy, never type(model)()."""

    def __init__(self, features: int, width: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, x):
        return self.body(x)


def _trained(model: nn.Module, data: DataSource):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, optimizer, data, uniform(data.all_indices()), sample_gradients=256, ledger=Ledger(), seed=0,
                loss_fn=nn.CrossEntropyLoss())
    return optimizer


def _snapshot(model, optimizer):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
               for k, s in optimizer.state_dict()["state"].items()}
    return weights, moments


def _same(snapshot, model, optimizer) -> bool:
    weights, moments = snapshot
    now = optimizer.state_dict()["state"]
    return all(torch.equal(weights[k], v) for k, v in model.state_dict().items()) and all(
        all(torch.equal(t, now[k][n]) if torch.is_tensor(t) else t == now[k][n] for n, t in s.items())
        for k, s in moments.items())


@pytest.mark.parametrize("make,factory", [
    (lambda: nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3)), None),
    (lambda: Wide(16, 24, 3), None),
    (lambda: Wide(16, 24, 3), lambda: Wide(16, 24, 3)),
])
def test_specialists_are_separate_copies_and_the_generalist_is_untouched(make, factory):
    torch.manual_seed(0)
    data = DataSource(boring_dataset(128), batch_size=16)
    model = make()
    optimizer = _trained(model, data)
    before = _snapshot(model, optimizer)
    lineage = Lineage()
    region = np.arange(20, dtype=np.int64)
    made = fork_specialists(model, optimizer, data, [ForkSpec("r1", region, 96), ForkSpec("r2", region + 40, 64)],
                            train_indices=data.all_indices(), seed=1, loss_fn=nn.CrossEntropyLoss(), factory=factory,
                            lineage=lineage, step=7)
    assert _same(before, model, optimizer)
    assert [s.report.sample_gradients for s in made] == [96, 64]
    for s in made:
        assert s.model is not model and type(s.model) is type(model)
        assert state_dict_hash(s.model) == s.state_hash != state_dict_hash(model)
        assert s.optimizer.state_dict()["state"][0]["step"] > before[1][0]["step"]  # it continued the forked state
    node = lineage.get(made[0].id)
    assert node.kind == "specialist" and node.step == 7 and node.spent == 96
    assert node.parents == ("generalist@7",) and lineage.get("generalist@7").state_hash == state_dict_hash(model)
    assert node.data["indices_hash"] == indices_hash(region) and node.data["replay_fraction"] == 0.2
    assert ("generalist@7", made[1].id) in lineage.edges() and "->" in lineage.to_dot()


def test_budgets_are_checked_before_anything_is_copied():
    data = DataSource(boring_dataset(64), batch_size=16)
    model = BoringModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidArgument, match="positive"):
        ForkSpec("r1", np.arange(8), 0)
    ledger = Ledger(100, "lab")
    with pytest.raises(BudgetExceeded, match="lab"):
        fork_specialists(model, optimizer, data, [ForkSpec("r1", np.arange(8), 60), ForkSpec("r2", np.arange(8), 60)],
                         train_indices=data.all_indices(), seed=0, loss_fn=nn.CrossEntropyLoss(), ledger=ledger)
    assert ledger.spent == 0
    with pytest.raises(InvalidArgument, match="outside"):
        fork_specialists(model, optimizer, data, [ForkSpec("r1", np.array([999]), 16)],
                         train_indices=data.all_indices(), seed=0, loss_fn=nn.CrossEntropyLoss())


def test_patience_stops_a_specialist_that_no_longer_improves():
    data = DataSource(boring_dataset(64), batch_size=16)
    model = nn.Sequential(nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # learns nothing: the loss never improves
    made = fork_specialists(model, optimizer, data, [ForkSpec("r1", np.arange(16), 4000, 0.0, patience=2)],
                            train_indices=data.all_indices(), seed=0, loss_fn=nn.CrossEntropyLoss())
    assert made[0].report.stopped_early and made[0].report.sample_gradients < 4000


def test_background_fork_trains_while_the_generalist_keeps_training():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(128), batch_size=16)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))
    optimizer = _trained(model, data)
    lineage = Lineage()
    future = start_fork(model, optimizer, data, [ForkSpec("r1", np.arange(32), 512)], train_indices=data.all_indices(),
                        seed=0, loss_fn=nn.CrossEntropyLoss(), lineage=lineage, step=3)
    forked_from = lineage.get("generalist@3").state_hash
    # The generalist trains on, on this thread, while the specialist trains on the worker.
    train_steps(model, optimizer, data, uniform(data.all_indices()), sample_gradients=256, ledger=Ledger(), seed=5,
                loss_fn=nn.CrossEntropyLoss(), isolate_rng=False)
    made = future.result(120)
    assert made[0].report.sample_gradients == 512 and made[0].parent == "generalist@3"
    assert forked_from != state_dict_hash(model) != made[0].state_hash
    assert threading.current_thread() is threading.main_thread()


def test_background_fork_refuses_models_that_draw_random_numbers():
    data = DataSource(boring_dataset(32), batch_size=16)
    model = BoringModel()  # has dropout
    with pytest.raises(FailedPrecondition, match="paused"):
        start_fork(model, torch.optim.SGD(model.parameters(), lr=0.1), data, [ForkSpec("r1", np.arange(8), 16)],
                   train_indices=data.all_indices(), seed=0, loss_fn=nn.CrossEntropyLoss())


def test_lineage_refuses_unknown_parents_and_names_missing_nodes():
    lineage = Lineage()
    with pytest.raises(NotFound):
        lineage.add("s1", "specialist", ("nobody",), step=0, state_hash="x")
    with pytest.raises(NotFound, match="lineage"):
        lineage.get("nope")
