"""The routed model's fast inference paths answer exactly as the plain definition of routing.

Reference (what the routed model has always meant, computed the slow, obvious way): each sample's
nearest centroid by ``RegionSet.cluster_of`` (float64), its expert by ``cluster_expert``; the answer is the
generalist's own output, with each specialist's output on its samples (boolean mask) put in their rows.
The fast paths (the generalist replayed child by child, the specialists' samples found by one comparison,
a value-minimum split or a sort, answers written in place) must give the same routes and bit-identical
logits on real fitted regions of digits-shift, at the test split's size and at large batches.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn as nn

from onthefly.demos.lab_benchmarks import load_benchmark, make_generalist
from onthefly.lab.budget import Ledger
from onthefly.lab.regions import discover_regions
from onthefly.lab.routing import (VALUE_MIN_FROM, CentroidRouter, build_routed, load_routed, router_from_space,
                                  save_routed)
from onthefly.lab.scoring import embed, score
from onthefly.lab.train_steps import DataSource, clone_model, train_steps, uniform

SEED = 200


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    other = clone_model(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return other.eval()


@pytest.fixture(scope="module")
def fitted():
    """A digits-shift generalist trained 4 epochs, its regions (k-means on all training samples), the test
    split, and the test split tiled past VALUE_MIN_FROM rows."""
    bench = load_benchmark("digits-shift", seed=SEED)
    generalist = make_generalist(bench.n_features, bench.n_classes, seed=SEED)
    data = DataSource(bench.train_dataset(), batch_size=64)
    train_steps(generalist, torch.optim.Adam(generalist.parameters(), lr=1e-3), data, uniform(data.all_indices()),
                sample_gradients=4 * data.size, ledger=Ledger(), seed=0, loss_fn=nn.CrossEntropyLoss())
    generalist.eval()
    regions = discover_regions(score(generalist, bench.train_dataset()), x=bench.x_train, ratio=1.0,
                               max_regions=2, seed=0)
    assert len(regions) >= 1
    x = torch.from_numpy(bench.x_test)
    large = x.repeat(-(-(VALUE_MIN_FROM + 100) // len(x)), 1)
    return generalist, regions, x, large


def _reference(generalist, specialists, regions, cluster_expert, x):
    """Routes and logits by the definition: float64 nearest centroid, masks, the generalist's own forward."""
    emb = embed(generalist, x, layer=None)
    route = torch.from_numpy(np.asarray(cluster_expert)[regions.cluster_of(x.numpy(), emb)])
    with torch.no_grad():
        out = generalist(x).clone()
        for k, expert in enumerate(specialists, start=1):
            mask = route == k
            if mask.any():
                out[mask] = expert(x[mask])
    return route, out


def _check(routed, generalist, specialists, regions, cluster_expert, batches):
    for x in batches:
        want_route, want = _reference(generalist, specialists, regions, cluster_expert, x)
        with torch.no_grad():
            got = routed(x)
            route = routed.route(x)
        assert torch.equal(route, want_route)
        assert torch.equal(got, want)  # bit for bit, not just the same argmax
        assert (route > 0).any() and (route == 0).any()


def test_one_region_routes_and_answers_exactly_as_the_definition_at_test_and_large_batches(fitted):
    generalist, regions, x, large = fitted
    specialists = [_perturbed(generalist, 1 + r) for r in range(len(regions))]
    routed = build_routed(generalist, specialists[:1], _first_region_only(regions))
    cluster_expert = np.zeros(regions.k, dtype=np.int64)
    cluster_expert[regions.regions[0].cluster] = 1
    x_before = x.clone()
    # the test split (index minimum + comparison) and a batch past VALUE_MIN_FROM (value-minimum split)
    _check(routed, generalist, specialists[:1], regions, cluster_expert, [x, large])
    assert torch.equal(x, x_before)  # the input is never written into
    # A batch nobody in the region: the specialist is skipped and the answer is the generalist's, exactly.
    with torch.no_grad():
        rest = x[routed.route(x) == 0]
        assert torch.equal(routed(rest), generalist(rest))
    # The same after a weights-only round trip (the cached centroid map follows the loaded buffers).
    buf = io.BytesIO()
    save_routed(routed, buf)
    again = load_routed(buf.getvalue(), lambda: make_generalist(64, 10, SEED))
    _check(again, generalist, specialists[:1], regions, cluster_expert, [x, large])


@pytest.mark.parametrize("centroid_position", ["first", "last"])
def test_value_minimum_split_keeps_argmin_order_for_a_region_centroid_at_either_end(fitted, centroid_position):
    generalist, regions, x, large = fitted
    specialist = _perturbed(generalist, 7)
    k = regions.k
    centroid = 0 if centroid_position == "first" else k - 1
    cluster_expert = np.zeros(k, dtype=np.int64)
    cluster_expert[centroid] = 1
    routed = build_routed(generalist, [specialist], router_from_space(regions.space, regions.centroids,
                                                                      cluster_expert))
    _check(routed, generalist, [specialist], regions, cluster_expert, [x, large])


def test_two_and_more_specialists_and_an_expert_owning_two_centroids_match_the_definition(fitted):
    generalist, regions, x, large = fitted
    k = regions.k
    specialists = [_perturbed(generalist, 20 + r) for r in range(5)]
    layouts = [
        [0, 1, 0, 2] + [0] * (k - 4),  # two specialists, one centroid each: a comparison per specialist
        [1, 0, 2, 3] + [0] * (k - 4),  # three: still a comparison each
        [1, 2, 3, 4, 5] + [0] * (k - 5),  # five (SORT_SPLIT_FROM): the sort-based split
        [0, 1, 0, 1] + [0] * (k - 4),  # one specialist owning two centroids: the sort-based split
    ]
    for layout in layouts:
        cluster_expert = np.asarray(layout, dtype=np.int64)
        n = int(cluster_expert.max())
        routed = build_routed(generalist, specialists[:n],
                              router_from_space(regions.space, regions.centroids, cluster_expert))
        _check(routed, generalist, specialists[:n], regions, cluster_expert, [x, large])


def test_hooked_and_non_linear_headed_generalists_take_the_general_path_with_the_same_answers(fitted):
    generalist, regions, x, _ = fitted
    specialist = _perturbed(generalist, 30)
    cluster_expert = np.zeros(regions.k, dtype=np.int64)
    cluster_expert[regions.regions[0].cluster] = 1
    routed = build_routed(generalist, [specialist], _first_region_only(regions))
    seen: list[torch.Tensor] = []
    handle = routed.experts[0].register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        with torch.no_grad():
            got = routed(x)
    finally:
        handle.remove()
    _, want = _reference(generalist, [specialist], regions, cluster_expert, x)
    assert torch.equal(got, want)
    assert not torch.equal(seen[0], got)  # what the user's hook saw was not overwritten afterwards

    # The embedding named as a layer's output ("3", the ReLU before the head) instead of the head's input.
    routed = build_routed(generalist, [specialist], _first_region_only(regions), layer="3")
    with torch.no_grad():
        assert torch.equal(routed(x), want)

    # A head that is not an nn.Linear (here an Identity after it): the output is not ours to write into.
    headed = nn.Sequential(*generalist, nn.Identity()).eval()
    spec_headed = nn.Sequential(*specialist, nn.Identity()).eval()
    routed = build_routed(headed, [spec_headed], _first_region_only(regions), layer="input of 4")
    with torch.no_grad():
        _, want = _reference(generalist, [specialist], regions, cluster_expert, x)
        assert torch.equal(routed(x), want)


def _first_region_only(regions):
    """A router for the first region alone (specialist 1), every other cluster to the generalist."""
    cluster_expert = np.zeros(regions.k, dtype=np.int64)
    cluster_expert[regions.regions[0].cluster] = 1
    return router_from_space(regions.space, regions.centroids, cluster_expert)


@pytest.mark.parametrize("position", [0, 2, 5])
@pytest.mark.parametrize("twin_goes_to", ["generalist", "specialist"])
def test_exact_ties_go_to_the_first_centroid_on_every_path(fitted, position, twin_goes_to):
    """A duplicated centroid ties exactly with its original for every sample: argmin's first index wins, at
    the test split's size and past VALUE_MIN_FROM rows alike. Exact by construction: integer weights on
    inputs that are multiples of 1/16 make every score exact in float32, whatever order a kernel sums in."""
    generalist, _, x, large = fitted
    specialist = _perturbed(generalist, 40)
    g = torch.Generator().manual_seed(position)
    weight = torch.randint(-2, 3, (6, x.shape[1]), generator=g).float()
    bias = torch.randint(-8, 9, (6,), generator=g).float()
    # shift `position`'s bias by a whole number so that it is nearest for about half of the samples
    raw = x.double() @ weight.double().T + bias.double()
    others = torch.cat([raw[:, :position], raw[:, position + 1:]], dim=1).amin(dim=1)
    bias[position] += float(torch.floor((others - raw[:, position]).median()))
    weight = torch.cat([weight, weight[position:position + 1]])  # centroid 6 duplicates centroid `position`
    bias = torch.cat([bias, bias[position:position + 1]])
    cluster_expert = torch.zeros(7, dtype=torch.int64)
    cluster_expert[6 if twin_goes_to == "specialist" else position] = 1
    router = CentroidRouter(torch.zeros(0), weight, torch.zeros(0), torch.zeros(7, 0), bias, cluster_expert)
    routed = build_routed(generalist, [specialist], router)
    for batch in (x, large):
        nearest = (batch.double() @ weight.double().T + bias.double()).argmin(dim=1)  # first index on ties
        want_route = cluster_expert[nearest]
        with torch.no_grad():
            got = routed(batch)
            want = generalist(batch).clone()
            mask = want_route == 1
            if mask.any():
                want[mask] = specialist(batch[mask])
        assert torch.equal(routed.route(batch), want_route)
        assert torch.equal(got, want)
        # the original (first) centroid wins every tie: the twin's expert gets nobody
        assert bool(mask.any()) == (twin_goes_to == "generalist")


def test_routed_model_still_differentiates_when_called_with_gradients_on(fitted):
    generalist, regions, x, _ = fitted
    routed = build_routed(generalist, [_perturbed(generalist, 50)], _first_region_only(regions))
    out = routed(x)  # grad mode on: the router's in-place accumulation must not break autograd
    assert out.requires_grad
    out.sum().backward()
    assert routed.experts[1][0].weight.grad is not None and routed.experts[0][0].weight.grad is not None
    with torch.no_grad():
        assert torch.equal(out.detach(), routed(x))
