"""The menu of resolutions for a region, every one spending exactly the same extra compute E.

    point = ForkPoint(model, optimizer, data, train_indices, table, regions, loss_fn=loss_fn, seed=seed)
    menu = run_menu(point, extra=E)            # Menu: .resolutions (each spent exactly E), .skipped (why)

All start from the same generalist at the same fork (PROTOCOL.md), and each gets its own ledger limited
to E, asserted spent to the sample-gradient:

- ``continue`` (a): the generalist trains on, on all data.
- ``upweight-hard`` (b): the top 20% by loss at the fork fill half of every batch (JTT-like).
- ``upweight-region`` (b'): the discovered regions fill half of every batch (the equally informed
  single model; always shown beside any fork result).
- ``balance-classes``: batches drawn with each class weighted by 1/sqrt(its training frequency) (square-root
  class-balanced sampling), offered only when the classes are imbalanced (the most frequent at least
  ``IMBALANCE`` times the least): where the worst group is a rare class, no region can be routed to (the
  class is what is predicted), and full class balancing costs several points of overall accuracy.
- ``fork-route``: one specialist per region (0.75 E between them, region + replay), the generalist
  fine-tuned on all data with the other 0.25 E; one routed module (``routing.RoutedModel``): the
  generalist answers the rest and gives the embedding the label-free router reads.
- merges, each from the same specialists plus 0.25 E of merge work: ``merge-uniform`` (average +
  BatchNorm recalibration + fine-tune), ``merge-fisher``, ``distill``, ``adapters`` — offered when
  lab-merge's modules are present (``onthefly/lab/merges/``).

Specialists are trained once per menu and shared by the fork variants; each variant's ledger is
charged their full cost, so every resolution accounts for all the compute its result needed.

Regions flagged as label noise are never acted on: no specialist, no upweighting. When every region is
flagged, the region resolutions are skipped, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.lab.budget import Ledger, LedgerSummary
from onthefly.lab.fork import ForkSpec, Specialist, fork_specialists, indices_hash, record_generalist
from onthefly.lab.lineage import Lineage
from onthefly.lab.scoring import ScoreTable, state_dict_hash
from onthefly.lab.train_steps import (
    DataSource, clone_model, clone_optimizer, replay, train_steps, uniform, upsample, weighted,
)
from onthefly.runtime.errors import InvalidArgument, NotFound

CONTINUE, HARD, REGION, ROUTE = "continue", "upweight-hard", "upweight-region", "fork-route"
BALANCE = "balance-classes"
MERGE_UNIFORM, MERGE_FISHER, DISTILL, ADAPTERS = "merge-uniform", "merge-fisher", "distill", "adapters"
# Last in the menu so that adding it left every other resolution's seed (its position in the menu) unchanged.
MENU = (CONTINUE, HARD, REGION, ROUTE, MERGE_UNIFORM, MERGE_FISHER, DISTILL, ADAPTERS, BALANCE)
DESCRIPTIONS = {
    CONTINUE: "(a) continue the generalist on all data",
    HARD: "(b) continue with the top-20%-loss samples upsampled to half of each batch",
    REGION: "(b') continue with the discovered region(s) upsampled to half of each batch",
    BALANCE: "continue with classes sampled by 1/sqrt(class frequency) (square-root class-balanced)",
    ROUTE: "fork a specialist per region and route to it with the label-free region assignment",
    MERGE_UNIFORM: "average the specialists, recalibrate BatchNorm, fine-tune",
    MERGE_FISHER: "Fisher-weighted average of the specialists (normalized diagonal Fisher)",
    DISTILL: "distill the specialists into the generalist on region + replay",
    ADAPTERS: "rank-4 low-rank adapters per region, fused",
}
HARD_FRACTION = 0.2  # the top share by loss that (b) upweights
UPWEIGHT = 0.5  # the share of each batch the upweighted set fills
SPECIALIST_SHARE = 0.75  # of E, for the fork variants; the rest is merge-phase work
REPLAY = 0.2  # a specialist's batches: 80% region, 20% the rest
# balance-classes: sampling weight (1 / class frequency) ** BALANCE_POWER. Square root, not full balancing: on the
# imbalanced benchmark's development seeds (100-111, benchmarks/lab_imbalanced_frontier.py) full balancing lifted
# the rare class most but cost 6.8 points of overall test accuracy, the square root 0.8.
BALANCE_POWER = 0.5
IMBALANCE = 2.0  # offered when the most frequent class is at least this many times the least frequent
# The resolutions that train one model for all of E (the others share specialists).
SINGLE_MODEL = (CONTINUE, HARD, REGION, BALANCE)


@dataclass(frozen=True, eq=False)
class ForkPoint:
    """The generalist and everything measured about it at the fork: the one starting point of every resolution.

    ``table`` is a scoring pass of the training samples with these weights (losses pick (b)'s hard set);
    ``regions`` the regions discovered on it; ``noisy_regions`` the ids flagged as likely label noise.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: DataSource
    train_indices: np.ndarray
    table: ScoreTable
    regions: Any  # onthefly.lab.regions.RegionSet
    loss_fn: Callable[..., torch.Tensor] | None = None
    step_fn: Callable[..., Any] | None = None
    factory: Callable[[], nn.Module] | None = None
    step: int = 0
    seed: int = 0
    noisy_regions: frozenset[str] = frozenset()

    def acted_regions(self) -> list[Any]:
        """The regions a resolution may act on: every discovered region not flagged as label noise."""
        return [r for r in self.regions.regions if r.id not in self.noisy_regions]

    def hard_indices(self) -> np.ndarray:
        """(b)'s set: the top ``HARD_FRACTION`` of the training samples by loss at the fork."""
        positions = self.table.positions(self.train_indices)
        losses = self.table.loss[positions]
        count = max(1, int(round(HARD_FRACTION * len(positions))))
        order = np.argsort(-losses, kind="stable")[:count]
        return self.train_indices[order]


@dataclass
class Resolution:
    """One resolution's result: a model (one ``nn.Module``, routed or not) and what it cost."""

    name: str
    model: nn.Module
    state_hash: str
    spent: LedgerSummary
    details: dict[str, Any] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None  # for a single model: its optimizer (state kept for apply)
    routed: bool = False
    lineage_id: str = ""

    @property
    def description(self) -> str:
        return DESCRIPTIONS.get(self.name, self.name)


@dataclass
class Menu:
    """Every resolution built at one fork, each at exactly ``extra`` sample-gradients; ``skipped`` says why
    any asked-for resolution was not built."""

    extra: int
    resolutions: list[Resolution]
    skipped: dict[str, str]
    specialists: list[Specialist]
    generalist_id: str
    blocked: dict[str, str] = field(default_factory=dict)  # built, but never to be recommended (and why)
    noisy_regions: frozenset[str] = frozenset()  # regions flagged as label noise at the fork

    def get(self, name: str) -> Resolution:
        for r in self.resolutions:
            if r.name == name:
                return r
        raise NotFound(f"no resolution {name!r} in this comparison; resolutions are: "
                       f"{', '.join(r.name for r in self.resolutions)}")


def _single(point: ForkPoint, name: str, extra: int, mix: Any, seed: int, details: dict) -> Resolution:
    ledger = Ledger(extra, name)
    model = clone_model(point.model, point.factory)
    optimizer = clone_optimizer(point.optimizer, point.model, model)
    train_steps(model, optimizer, point.data, mix, sample_gradients=extra, ledger=ledger, seed=seed,
                loss_fn=point.loss_fn, step_fn=point.step_fn, label=name)
    ledger.assert_spent_exactly(extra)
    model.eval()
    return Resolution(name, model, state_dict_hash(model), ledger.summary(), details, optimizer)


def run_menu(point: ForkPoint, extra: int, names: Sequence[str] = MENU, *, lineage: Lineage | None = None,
             hard_noise_overlap: float = 1 / 3) -> Menu:
    """Build the resolutions ``names`` from ``point``, each spending exactly ``extra`` sample-gradients."""
    if isinstance(extra, bool) or not isinstance(extra, (int, np.integer)) or extra < 1:
        raise InvalidArgument(f"the extra compute E must be a positive number of sample-gradients, got {extra!r}")
    unknown = [n for n in names if n not in MENU]
    if unknown:
        raise InvalidArgument(f"unknown resolution(s) {unknown}; the menu is: {', '.join(MENU)}")
    extra = int(extra)
    lineage = lineage if lineage is not None else Lineage()
    parent = record_generalist(lineage, point.model, point.step)
    train = np.asarray(point.train_indices, dtype=np.int64)
    acted = point.acted_regions()
    region_members = (np.unique(np.concatenate([np.intersect1d(r.indices, train) for r in acted]))
                      if acted else np.zeros(0, np.int64))
    resolutions: list[Resolution] = []
    skipped: dict[str, str] = {}
    blocked: dict[str, str] = {}
    no_region = _no_region_reason(point)
    specialists: list[Specialist] = []

    for i, name in enumerate(names):
        seed = point.seed * 1000 + i
        if name == CONTINUE:
            resolutions.append(_single(point, name, extra, uniform(train), seed, {"data": "all"}))
        elif name == HARD:
            hard = point.hard_indices()
            details = {"hard_set": int(hard.size), "fraction_of_batch": UPWEIGHT, "indices_hash": indices_hash(hard)}
            flagged = [r for r in point.regions.regions if r.id in point.noisy_regions]
            if flagged:
                in_noise = np.isin(hard, np.concatenate([r.indices for r in flagged])).mean()
                details["hard_set_in_noise_regions"] = float(in_noise)
                if in_noise >= hard_noise_overlap:
                    blocked[name] = (f"{in_noise:.0%} of the hard set lies in region(s) flagged as likely label "
                                     "noise; upweighting it would fit the noise")
            resolutions.append(_single(point, name, extra, upsample(train, hard, UPWEIGHT), seed, details))
        elif name == BALANCE:
            result = _balanced(point, extra, train, seed)
            if isinstance(result, str):
                skipped[name] = result
            else:
                resolutions.append(result)
        elif no_region is not None and name != ADAPTERS:
            skipped[name] = no_region
        elif name == REGION:
            details = {"regions": [r.id for r in acted], "region_samples": int(region_members.size),
                       "fraction_of_batch": UPWEIGHT}
            resolutions.append(_single(point, name, extra, upsample(train, region_members, UPWEIGHT), seed, details))
        elif name == ADAPTERS:
            result = _adapters(point, extra, seed, acted, train, no_region)
            if isinstance(result, str):
                skipped[name] = result
            else:
                resolutions.append(result)
        else:
            if not specialists:
                specialists = _specialists(point, extra, acted, train, lineage, parent)
            result = _fork_variant(name, point, extra, seed, specialists, acted, train, region_members)
            if isinstance(result, str):
                skipped[name] = result
            else:
                resolutions.append(result)
    for r in resolutions:
        if r.spent.sample_gradients != extra:  # matched compute is the protocol's premise: never report without it
            raise AssertionError(f"resolution {r.name} spent {r.spent.sample_gradients} sample-gradients, not "
                                 f"E = {extra}")
        parents = (parent,) + tuple(s.id for s in specialists if r.details.get("uses_specialists"))
        r.lineage_id = f"{r.name}@{point.step}"
        lineage.add(r.lineage_id, "resolution", parents, step=point.step, state_hash=r.state_hash,
                    data={k: v for k, v in r.details.items() if isinstance(v, (int, float, str, list, bool))},
                    budget=extra, spent=r.spent.sample_gradients, replace=True)
    return Menu(extra, resolutions, skipped, specialists, parent, blocked, frozenset(point.noisy_regions))


def class_weights(labels: np.ndarray, power: float = BALANCE_POWER) -> tuple[np.ndarray, float]:
    """Per-sample sampling weights (1 / class frequency) ** power, and the imbalance (most / least frequent
    class among those present)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(labels)
    present = counts[counts > 0]
    imbalance = float(present.max() / present.min()) if present.size else 1.0
    frequency = counts[labels] / labels.size
    return frequency ** -power, imbalance


def _balanced(point: ForkPoint, extra: int, train: np.ndarray, seed: int) -> Resolution | str:
    labels = point.table.label[point.table.positions(train)]
    weights, imbalance = class_weights(labels)
    if imbalance < IMBALANCE:
        return (f"the classes are balanced (the most frequent is {imbalance:.1f}x the least, under {IMBALANCE:g}x): "
                "nothing to rebalance")
    details = {"power": BALANCE_POWER, "imbalance": round(imbalance, 3), "data": "all, class-weighted"}
    return _single(point, BALANCE, extra, weighted(train, weights), seed, details)


def _no_region_reason(point: ForkPoint) -> str | None:
    if not point.regions.regions:
        return "no error region was discovered at this fork: nothing to act on"
    if not point.acted_regions():
        return ("every discovered region is flagged as likely label noise; acting on it would fit the noise "
                f"({', '.join(sorted(point.noisy_regions))})")
    return None


def specialist_budgets(extra: int, regions: int) -> list[int]:
    """SPECIALIST_SHARE of E split as evenly as whole sample-gradients allow."""
    total = int(extra * SPECIALIST_SHARE)
    return [total // regions + (1 if i < total % regions else 0) for i in range(regions)]


def _specialists(point: ForkPoint, extra: int, acted: list[Any], train: np.ndarray, lineage: Lineage,
                 parent: str) -> list[Specialist]:
    budgets = specialist_budgets(extra, len(acted))
    specs = [ForkSpec(r.id, np.intersect1d(r.indices, train), b, REPLAY) for r, b in zip(acted, budgets)]
    return fork_specialists(point.model, point.optimizer, point.data, specs, train_indices=train,
                            seed=point.seed * 1000 + 500, loss_fn=point.loss_fn, step_fn=point.step_fn,
                            factory=point.factory, lineage=lineage, step=point.step, parent=parent,
                            id_prefix=f"s@{point.step}:")


def _fork_variant(name: str, point: ForkPoint, extra: int, seed: int, specialists: list[Specialist],
                  acted: list[Any], train: np.ndarray, region_members: np.ndarray) -> Resolution | str:
    ledger = Ledger(extra, name)
    shared = sum(s.report.sample_gradients for s in specialists)
    ledger.charge(shared, "specialists")
    merge_work = extra - shared
    details: dict[str, Any] = {"uses_specialists": True, "specialists": [s.id for s in specialists],
                               "specialist_sample_gradients": shared, "merge_sample_gradients": merge_work}
    models = [s.model for s in specialists]
    rest = np.setdiff1d(train, region_members)
    if name == ROUTE:
        from onthefly.lab.routing import build_routed, router_from_space

        base = clone_model(point.model, point.factory)
        optimizer = clone_optimizer(point.optimizer, point.model, base)
        if merge_work > 0:  # the rest's expert: the generalist, trained on with the merge-phase share
            train_steps(base, optimizer, point.data, uniform(train), sample_gradients=merge_work, ledger=ledger,
                        seed=seed, loss_fn=point.loss_fn, step_fn=point.step_fn, label="generalist fine-tune")
        regions = point.regions
        cluster_expert = np.zeros(regions.k, dtype=np.int64)
        for number, region in enumerate(acted, 1):
            cluster_expert[region.cluster] = number
        router = router_from_space(regions.space, regions.centroids, cluster_expert)
        model = build_routed(base, models, router, layer=point.table.layer, factory=point.factory)
        details["router"] = "nearest centroid (label-free region assignment)"
        ledger.assert_spent_exactly(extra)
        return Resolution(name, model, state_dict_hash(model), ledger.summary(), details, None, routed=True)
    merge_mix = replay(region_members, rest, 0.5)
    regions_of = [np.intersect1d(r.indices, train) for r in acted]
    merged = _merge(name, point, models, merge_mix, ledger, seed, regions_of)
    if isinstance(merged, str):
        return merged
    details.update({"merge": merged.kind, **{k: v for k, v in dict(merged.details).items()
                                             if isinstance(v, (int, float, str, bool))}})
    ledger.assert_spent_exactly(extra)
    merged.model.eval()
    return Resolution(name, merged.model, merged.state_hash, ledger.summary(), details, None)


def _merge(name: str, point: ForkPoint, models: list[nn.Module], mix: Any, ledger: Ledger, seed: int,
           regions_of: list[np.ndarray]) -> Any:
    """Call lab-merge's merge for ``name``; a string says why it is not available."""
    common = dict(optimizer=point.optimizer, data=point.data, mix=mix, ledger=ledger, seed=seed,
                  loss_fn=point.loss_fn, step_fn=point.step_fn)
    try:
        if name == MERGE_UNIFORM:
            from onthefly.lab.merges.average import uniform_merge

            return uniform_merge(point.model, models, factory=point.factory, **common)
        if name == MERGE_FISHER:
            from onthefly.lab.merges.fisher import fisher_merge

            return fisher_merge(point.model, models, region_indices=regions_of, factory=point.factory, **common)
        if name == DISTILL:
            from onthefly.lab.merges.distill import distill_merge

            return distill_merge(point.model, models, region_indices=regions_of, factory=point.factory, **common)
    except ImportError as exc:
        return f"this merge is not available in this build ({exc})"
    except InvalidArgument as exc:  # e.g. the merge phase's share of E is too small for this merge
        return f"cannot be built at this budget: {exc}"
    return f"unknown merge {name}"


def _adapters(point: ForkPoint, extra: int, seed: int, acted: list[Any], train: np.ndarray,
              no_region: str | None) -> Resolution | str:
    if no_region is not None:
        return no_region
    try:
        from onthefly.lab.merges.adapters import adapter_merge
    except ImportError as exc:
        return f"adapters are not available in this build ({exc})"
    ledger = Ledger(extra, ADAPTERS)
    regions = [np.intersect1d(r.indices, train) for r in acted]
    result = adapter_merge(point.model, regions, optimizer=point.optimizer, data=point.data, train_indices=train,
                           ledger=ledger, seed=seed, loss_fn=point.loss_fn, step_fn=point.step_fn,
                           factory=point.factory)
    ledger.assert_spent_exactly(extra)
    result.model.eval()
    details = {"merge": result.kind, **{k: v for k, v in dict(result.details).items()
                                        if isinstance(v, (int, float, str, bool))}}
    return Resolution(ADAPTERS, result.model, result.state_hash, ledger.summary(), details, None)

