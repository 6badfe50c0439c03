"""The menu: every resolution spends exactly E from the same fork; the generalist is untouched; regions
flagged as label noise are never acted on; the comparison scores every slice with its inference cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.boring import boring_dataset
from onthefly.lab.budget import Ledger
from onthefly.lab.compare import compare, evaluation_slices
from onthefly.lab.lineage import Lineage
from onthefly.lab.regions import discover_regions
from onthefly.lab.resolutions import (
    BALANCE, CONTINUE, HARD, MENU, MERGE_FISHER, REGION, ROUTE, ForkPoint, class_weights, run_menu,
)
from onthefly.lab.scoring import embed, score, state_dict_hash
from onthefly.lab.train_steps import DataSource, batch_plan, train_steps, uniform, weighted
from onthefly.runtime.errors import InvalidArgument


@pytest.fixture(scope="module")
def point():
    torch.manual_seed(0)
    dataset = boring_dataset(200, seed=1)
    model = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = DataSource(dataset, batch_size=32)
    train_steps(model, optimizer, data, uniform(data.all_indices()), sample_gradients=400, ledger=Ledger(), seed=0,
                loss_fn=nn.CrossEntropyLoss())
    table = score(model, dataset)
    x = dataset.tensors[0].numpy()
    regions = discover_regions(table, x=x, k=4, ratio=1.0, max_regions=2, seed=0)
    assert regions.regions
    return ForkPoint(model, optimizer, data, data.all_indices(), table, regions, loss_fn=nn.CrossEntropyLoss(),
                     step=12, seed=3), x, dataset


def test_every_resolution_spends_exactly_E_and_leaves_the_generalist_alone(point):
    fork, x, dataset = point
    before = state_dict_hash(fork.model)
    moments = fork.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    lineage = Lineage()
    menu = run_menu(fork, 150, MENU, lineage=lineage)
    built = {r.name for r in menu.resolutions}
    assert {CONTINUE, HARD, REGION, ROUTE} <= built
    # At this small E the merge phase (E/4) cannot pay for 128 Fisher samples per model: skipped, with why; the
    # classes are balanced (64/62/74), so there is nothing for balance-classes to rebalance.
    assert set(menu.skipped) <= {MERGE_FISHER, BALANCE}
    assert "balanced" in menu.skipped[BALANCE]
    assert all("budget" in why for name, why in menu.skipped.items() if name != BALANCE)
    for r in menu.resolutions:
        assert r.spent.sample_gradients == 150, r.name
        assert r.state_hash == state_dict_hash(r.model) != before
        assert lineage.get(r.lineage_id).parents[0] == "generalist@12"
    assert state_dict_hash(fork.model) == before
    assert torch.equal(fork.optimizer.state_dict()["state"][0]["exp_avg"], moments)
    route = menu.get(ROUTE)
    assert route.routed and route.details["specialist_sample_gradients"] == 112  # 0.75 E between the specialists

    y = dataset.tensors[1].numpy()
    slices = evaluation_slices(fork.regions, x, embedding=embed(fork.model, x), y=y, n_classes=3)
    names = [s.name for s in slices]
    assert names[0] == "overall" and "rest" in names and "class 2" in names
    assert any(n.startswith("region r") for n in names)
    table = compare(menu.resolutions, x, y, slices, reference=fork.model, split="val", cost_repeats=1)
    assert {row.name for row in table.rows} == built
    route_row = table.row(ROUTE)
    assert 1.0 < route_row.flops_ratio < 2.0  # the generalist, plus a specialist only on routed samples
    assert table.row(CONTINUE).flops_ratio == pytest.approx(1.0)
    assert table.best["worst"] in built


def test_regions_flagged_as_noise_are_never_acted_on(point):
    fork, _, _ = point
    everything = frozenset(r.id for r in fork.regions.regions)
    noisy = ForkPoint(**{**fork.__dict__, "noisy_regions": everything})
    menu = run_menu(noisy, 64, (CONTINUE, HARD, REGION, ROUTE))
    assert [r.name for r in menu.resolutions] == [CONTINUE, HARD]
    assert "label noise" in menu.skipped[REGION] and "label noise" in menu.skipped[ROUTE]
    assert HARD in menu.blocked  # its top-loss set lies in the flagged regions


def test_balance_classes_samples_rare_classes_by_the_square_root_of_their_frequency(point):
    fork, _, dataset = point
    labels = dataset.tensors[1].numpy()
    # An imbalanced training set: all of class 2, the first 12 of class 0 and 8 of class 1.
    train = np.sort(np.r_[np.flatnonzero(labels == 2), np.flatnonzero(labels == 0)[:12],
                          np.flatnonzero(labels == 1)[:8]])
    before = state_dict_hash(fork.model)
    menu = run_menu(ForkPoint(**{**fork.__dict__, "train_indices": train}), 96, (CONTINUE, BALANCE))
    built = menu.get(BALANCE)
    assert built.spent.sample_gradients == 96 and built.details["power"] == 0.5
    assert built.state_hash != menu.get(CONTINUE).state_hash and state_dict_hash(fork.model) == before
    # Drawn shares follow sqrt(class count): class 1 (8 of 94 samples, 8.5%) gets sqrt(8) / (sqrt(12) + sqrt(8) +
    # sqrt(74)) = 19% of the draws.
    weights, imbalance = class_weights(labels[train])
    assert imbalance == pytest.approx(74 / 8)
    drawn = labels[np.concatenate(batch_plan(weighted(train, weights), 20_000, 64, seed=0))]
    expected = np.sqrt([12, 8, 74]) / np.sqrt([12, 8, 74]).sum()
    assert np.allclose(np.bincount(drawn, minlength=3) / drawn.size, expected, atol=0.01)


def test_bad_menus_are_refused(point):
    fork, _, _ = point
    with pytest.raises(InvalidArgument, match="menu"):
        run_menu(fork, 64, ("continue", "magic"))
    with pytest.raises(InvalidArgument, match="positive"):
        run_menu(fork, 0, (CONTINUE,))


def test_the_cli_offers_exactly_the_menu():
    from onthefly.cli import lab_resolution_cmds

    assert lab_resolution_cmds.MENU == MENU
