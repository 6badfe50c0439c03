"""The routed model: experts + label-free router as one nn.Module (onthefly.lab.routing)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.cluster import KMeans

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.features import fit_space
from onthefly.lab.merges.result import state_dict_hash
from onthefly.lab.routing import (build_routed, count_flops, inference_cost, load_routed, router_from_space,
                                  save_routed)
from onthefly.lab.scoring import embed
from onthefly.lab.train_steps import clone_model
from onthefly.runtime.errors import InvalidArgument


class ArgNet(nn.Module):
    """A model whose constructor needs arguments (so nothing may call type(model)())."""

    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.out(torch.relu(self.mid(torch.relu(self.inp(x)))))


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    other = clone_model(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return other


def _setup(model: nn.Module, layer: str | None = None, k: int = 5):
    x = boring_dataset(300, seed=4).tensors[0]
    emb = embed(model, x, layer=layer)
    space = fit_space(x.numpy(), emb)
    km = KMeans(n_clusters=k, n_init=4, random_state=0).fit(space.transform(x.numpy(), emb))
    cluster_expert = np.zeros(k, dtype=np.int64)
    cluster_expert[1], cluster_expert[3] = 1, 2  # two clusters are regions, the rest goes to the generalist
    router = router_from_space(space, km.cluster_centers_, cluster_expert)
    expected = cluster_expert[km.predict(space.transform(x.numpy(), emb))]
    return x, router, expected


def test_routed_model_routes_label_free_and_answers_with_the_routed_expert():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    specialists = [_perturbed(generalist, 1).eval(), _perturbed(generalist, 2).eval()]
    x, router, expected = _setup(generalist)
    before = state_dict_hash(generalist)
    routed = build_routed(generalist, specialists, router)
    route = routed.route(x).numpy()
    assert np.array_equal(route, expected) and set(route) == {0, 1, 2}
    with torch.no_grad():
        out = routed(x)
        by_expert = [m(x) for m in [generalist, *specialists]]
    for k in range(3):
        assert torch.allclose(out[route == k], by_expert[k][route == k], atol=1e-6)
    assert state_dict_hash(generalist) == before
    assert all(e is not m for e, m in zip(routed.experts, [generalist, *specialists]))
    routed.dense = True
    with torch.no_grad():
        assert torch.allclose(routed(x), out, atol=1e-6)


def test_save_and_reload_with_weights_only_and_the_user_factory_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    factory = lambda: ArgNet(16, 20, 3)  # noqa: E731
    generalist = factory().eval()
    specialists = [_perturbed(generalist, 3), _perturbed(generalist, 4)]
    x, router, _ = _setup(generalist, layer="mid")  # the output of a named layer this time
    routed = build_routed(generalist, specialists, router, layer="mid", factory=factory)
    path = tmp_path / "routed.pt"
    save_routed(routed, path)
    torch.load(path, weights_only=True)  # loads without any pickle allowance
    again = load_routed(path, factory)
    with torch.no_grad():
        assert torch.equal(again(x), routed(x))
        assert torch.equal(again.route(x), routed.route(x))
    assert state_dict_hash(again) == state_dict_hash(routed)
    # A plain state dict is enough too: the structure travels in it as plain extra state.
    plain = tmp_path / "plain.pt"
    torch.save(routed.state_dict(), plain)
    third = load_routed(torch.load(plain, weights_only=True), factory)
    with torch.no_grad():
        assert torch.equal(third(x), routed(x))
    with pytest.raises(InvalidArgument, match="another shape"):
        build_routed(generalist, specialists, router, layer=None).load_state_dict(routed.state_dict())

    with pytest.raises(InvalidArgument, match="factory"):
        load_routed(path, lambda: ArgNet(16, 8, 3))
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buf)
    with pytest.raises(InvalidArgument, match="not a routed-model checkpoint"):
        load_routed(buf.getvalue(), factory)
    with pytest.raises(InvalidArgument, match="no layer named"):
        build_routed(generalist, specialists, router, layer="nope")


def test_routed_model_survives_torch_export():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    specialists = [_perturbed(generalist, 5).eval(), _perturbed(generalist, 6).eval()]
    x, router, _ = _setup(generalist)
    routed = build_routed(generalist, specialists, router)
    exported = torch.export.export(routed, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},), strict=False)
    with torch.no_grad():
        got, want = exported.module()(x), routed(x)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(got.argmax(1), want.argmax(1))
    # Other samples route differently: the program must not have baked in this batch's routes.
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(9)) * 2
    with torch.no_grad():
        assert not torch.equal(routed.route(other), routed.route(x))
        assert torch.allclose(exported.module()(other), routed(other), atol=1e-5)
        assert torch.allclose(exported.module()(other[:17]), routed(other[:17]), atol=1e-5)  # any batch size


def test_inference_cost_counts_only_the_routed_samples_specialists():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    specialists = [_perturbed(generalist, 7), _perturbed(generalist, 8)]
    x, router, expected = _setup(generalist)
    routed = build_routed(generalist, specialists, router)
    cost = inference_cost(routed, generalist, x, repeats=3)
    one = count_flops(generalist, x)
    routed_count = int((expected > 0).sum())
    router_flops = count_flops(_RouterOnly(routed), x) - one
    k = routed.router.bias.numel()
    features = routed.router.input_weight.shape[1] + routed.router.embedding_weight.shape[1]
    assert router_flops == 2 * k * features * len(x)  # both score matmuls are counted, whatever form they take
    # The generalist on all samples + each specialist on its routed samples + the router's projections.
    assert cost.flops_per_sample * len(x) == one + one * routed_count / len(x) + router_flops
    assert 1 + routed_count / len(x) < cost.flops_ratio < 3
    assert cost.single_flops_per_sample == pytest.approx(one / len(x))
    assert cost.time_ratio > 0 and cost.seconds_per_sample > 0
    routed.dense = True
    assert count_flops(routed, x) == 3 * one + router_flops  # every expert on every sample


class _RouterOnly(nn.Module):
    def __init__(self, routed):
        super().__init__()
        self.routed = routed

    def forward(self, x):
        return self.routed.route(x)


def test_router_built_from_discovered_regions_routes_exactly_as_regionset_assign():
    from onthefly.demos.lab_benchmarks import load_benchmark, make_generalist
    from onthefly.lab.budget import Ledger
    from onthefly.lab.regions import discover_regions
    from onthefly.lab.scoring import score
    from onthefly.lab.train_steps import DataSource, train_steps, uniform

    bench = load_benchmark("digits-shift", seed=200)
    generalist = make_generalist(bench.n_features, bench.n_classes, seed=200)
    data = DataSource(bench.train_dataset(), batch_size=64)
    train_steps(generalist, torch.optim.Adam(generalist.parameters(), lr=1e-3), data, uniform(data.all_indices()),
                sample_gradients=4 * data.size, ledger=Ledger(), seed=0, loss_fn=nn.CrossEntropyLoss())
    generalist.eval()
    regions = discover_regions(score(generalist, bench.train_dataset()), x=bench.x_train, ratio=1.0, max_regions=2,
                               seed=0)
    assert len(regions) >= 1
    specialists = [_perturbed(generalist, 10 + r) for r in range(len(regions))]
    routed = build_routed(generalist, specialists, regions)
    x_test = torch.from_numpy(bench.x_test)
    want = regions.assign(bench.x_test, embed(generalist, x_test, layer=None)) + 1
    assert np.array_equal(routed.route(x_test).numpy(), want)
    with pytest.raises(InvalidArgument, match="one specialist per region"):
        build_routed(generalist, specialists + [generalist], regions)


def test_router_stays_exact_for_inputs_far_from_zero():
    """float32 scores: centring before the matmul keeps routes right when features carry a large offset."""
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    x = boring_dataset(300, seed=4).tensors[0].double() * 0.01 + 1e4  # tiny spread around a huge offset
    emb = embed(generalist, x.float())
    space = fit_space(x.numpy(), emb)
    km = KMeans(n_clusters=5, n_init=4, random_state=0).fit(space.transform(x.numpy(), emb))
    cluster_expert = np.arange(5) % 2
    router = router_from_space(space, km.cluster_centers_, cluster_expert)
    want = cluster_expert[km.predict(space.transform(x.numpy(), emb))]
    got = router(x.float(), torch.from_numpy(emb)).numpy()
    assert np.array_equal(got, want)  # folding the mean into the bias instead misroutes 2 of these 300


def test_router_folds_centred_means_into_the_bias_but_keeps_centring_for_offset_inputs():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    _, near_zero, _ = _setup(generalist)
    assert near_zero.input_mean.numel() == 0 and near_zero.embedding_mean.numel() == 0  # folded: no subtraction
    x = boring_dataset(300, seed=4).tensors[0].double() * 0.01 + 1e4
    emb = embed(generalist, x.float())
    space = fit_space(x.numpy(), emb)
    km = KMeans(n_clusters=5, n_init=4, random_state=0).fit(space.transform(x.numpy(), emb))
    offset = router_from_space(space, km.cluster_centers_, np.arange(5) % 3)
    assert offset.input_mean.numel() == x.shape[1]  # the offset block stays centred
    # Both layouts survive a weights-only round trip with the same routes and answers.
    specialists = [_perturbed(generalist, 11), _perturbed(generalist, 12)]
    for router, inputs in ((near_zero, boring_dataset(300, seed=4).tensors[0]), (offset, x.float())):
        routed = build_routed(generalist, specialists, router)
        buf = io.BytesIO()
        save_routed(routed, buf)
        again = load_routed(buf.getvalue(), BoringModel)
        with torch.no_grad():
            assert torch.equal(again(inputs), routed(inputs))
            assert torch.equal(again.route(inputs), routed.route(inputs))


def test_router_breaks_exact_ties_toward_the_first_centroid_like_argmin():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    x = boring_dataset(300, seed=4).tensors[0]
    emb = embed(generalist, x)
    space = fit_space(x.numpy(), emb)
    points = space.transform(x.numpy(), emb)
    centroids = KMeans(n_clusters=3, n_init=4, random_state=0).fit(points).cluster_centers_
    twins = np.concatenate([centroids, centroids[:1]])  # centroid 3 duplicates centroid 0: every distance ties
    router = router_from_space(space, twins, np.array([0, 1, 2, 1]))
    nearest = ((points[:, None, :] - twins[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (nearest == 0).any() and not (nearest == 3).any()
    assert np.array_equal(router(x, torch.from_numpy(emb)).numpy(), np.array([0, 1, 2, 1])[nearest])


class _Doubled(BoringModel):
    """A Sequential subclass with its own forward: the router must not replay the children instead."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_sequential_generalist_answers_as_its_own_forward_with_or_without_hooks():
    torch.manual_seed(0)
    generalist = BoringModel().eval()
    specialists = [_perturbed(generalist, 13), _perturbed(generalist, 14)]
    x, router, _ = _setup(generalist)
    routed = build_routed(generalist, specialists, router)
    with torch.no_grad():
        fast_out, fast_route = routed(x), routed.route(x)
        handle = routed.experts[0].register_forward_hook(lambda _m, _a, out: out)  # forces the hook path
        assert torch.equal(routed(x), fast_out) and torch.equal(routed.route(x), fast_route)
        handle.remove()
        assert torch.equal(fast_out[fast_route == 0], generalist(x)[fast_route == 0])

    doubled = _Doubled().eval()
    doubled.load_state_dict(generalist.state_dict())
    routed = build_routed(doubled, specialists, router, factory=_Doubled)
    with torch.no_grad():
        out, route = routed(x), routed.route(x)
        assert torch.equal(route, fast_route)  # same embedding (the last Linear's input), same routes
        assert torch.equal(out[route == 0], 2 * fast_out[route == 0])
