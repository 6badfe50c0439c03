"""Fork specialists: real, separate copies of the generalist, each trained on its own region with replay.

    specialists = fork_specialists(model, optimizer, data, [ForkSpec("r1", region_indices, budget=2500)],
                                   train_indices=members, seed=0, loss_fn=loss_fn, lineage=lineage, step=step)

A specialist is copied from the generalist's state (``copy.deepcopy``, or the user's factory +
``load_state_dict``; never ``type(model)()``), gets its own optimizer with the generalist's optimizer state
forked (Adam moments, step counts), its own ledger (a sample-gradient budget, optional patience) and its
own data: the region's base indices, with ``replay_fraction`` of every batch drawn from the rest of the
training set. The generalist and its optimizer are only read.

Two ways to run (the user's choice):
- ``fork_specialists``: trains on the calling thread. Call it on the training thread at a step boundary
  (the generalist is paused meanwhile, through ``ForkCommand``) or from a script. The global RNG is seeded
  for the lab and given back afterwards, so the run's numbers are as if nothing had happened.
- ``start_fork``: copies are taken now, training happens on a worker thread while the generalist keeps
  going. torch has one global RNG for every thread, so a model that draws random numbers while training
  (dropout and friends) would steal draws from the run; such models are refused in this mode with a
  message saying to fork with the run paused.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from onthefly.lab.budget import Ledger, LedgerSummary
from onthefly.lab.lineage import Lineage
from onthefly.lab.scoring import state_dict_hash
from onthefly.lab.train_steps import (
    DataSource, TrainReport, clone_model, clone_optimizer, replay, train_steps,
)
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument

DEFAULT_REPLAY = 0.2
# Modules whose training-mode forward draws from torch's global RNG.
_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU)


@dataclass(frozen=True)
class ForkSpec:
    """What one specialist trains on and how much it may spend."""

    region_id: str
    indices: np.ndarray  # the region's base indices (training members only)
    budget: int  # sample-gradients
    replay_fraction: float = DEFAULT_REPLAY
    patience: int | None = None  # passes over the region without a better mean loss before stopping early

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, np.integer)) or self.budget < 1:
            raise InvalidArgument(f"a specialist's budget must be a positive number of sample-gradients, "
                                  f"got {self.budget!r}")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise InvalidArgument(f"the replay fraction must be in [0, 1), got {self.replay_fraction}")
        if self.patience is not None and self.patience < 1:
            raise InvalidArgument(f"patience must be at least 1 pass, got {self.patience}")
        if len(self.indices) == 0:
            raise InvalidArgument(f"region {self.region_id} has no training samples to fork on")


@dataclass
class Specialist:
    """A trained fork: its model and optimizer (owned by the lab), what it spent, its lineage node id."""

    id: str
    spec: ForkSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    report: TrainReport
    spent: LedgerSummary
    state_hash: str
    parent: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)


def indices_hash(indices: np.ndarray) -> str:
    """A short hash of a selection (sorted base indices), so lineage names exactly what was trained on."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()[:16]


def _patience_stop(spec: ForkSpec) -> Callable[[int, float], bool] | None:
    """Stop when ``patience`` passes over the region in a row end without a lower mean training loss."""
    if spec.patience is None:
        return None
    per_pass = max(1, int(len(spec.indices) / max(1e-9, 1.0 - spec.replay_fraction)))
    state = {"best": float("inf"), "bad": 0, "sum": 0.0, "n": 0, "next": per_pass, "last": 0}

    def stop(spent: int, last_loss: float) -> bool:
        state["sum"] += last_loss * (spent - state["last"])
        state["n"] += spent - state["last"]
        state["last"] = spent
        if spent < state["next"]:
            return False
        mean = state["sum"] / max(1, state["n"])
        state["sum"], state["n"], state["next"] = 0.0, 0, spent + per_pass
        if mean < state["best"] - 1e-6:
            state["best"], state["bad"] = mean, 0
            return False
        state["bad"] += 1
        return state["bad"] >= spec.patience

    return stop


@dataclass
class _Prepared:
    spec: ForkSpec
    id: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ledger: Ledger
    mix: Any
    data: dict[str, Any]


def _prepare(generalist: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, specs: Sequence[ForkSpec],
             train_indices: np.ndarray, factory: Callable[[], nn.Module] | None, ledger: Ledger | None,
             id_prefix: str, taken: Callable[[str], bool]) -> list[_Prepared]:
    if not specs:
        raise InvalidArgument("name at least one region to fork on")
    total = sum(int(s.budget) for s in specs)
    if ledger is not None:
        ledger.require(total)  # refuse the whole fork before copying anything
    train_indices = np.asarray(train_indices, dtype=np.int64)
    prepared = []
    for number, spec in enumerate(specs, 1):
        region = data.check_indices(spec.indices, f"region {spec.region_id}")
        rest = np.setdiff1d(train_indices, region)
        model = clone_model(generalist, factory)
        opt = clone_optimizer(optimizer, generalist, model)
        name = f"{id_prefix}{spec.region_id}"
        suffix = 2
        while taken(name):
            name, suffix = f"{id_prefix}{spec.region_id}-{suffix}", suffix + 1
        own = ledger.sub(int(spec.budget), name) if ledger is not None else Ledger(int(spec.budget), name)
        details = {"region": spec.region_id, "region_size": int(region.size), "rest_size": int(rest.size),
                   "replay_fraction": spec.replay_fraction, "indices_hash": indices_hash(region),
                   "patience": spec.patience}
        prepared.append(_Prepared(spec, name, model, opt, own, replay(region, rest, spec.replay_fraction), details))
    return prepared


def _train(p: _Prepared, data: DataSource, seed: int, loss_fn: Any, step_fn: Any, isolate_rng: bool,
           parent: str, step: int, lineage: Lineage | None) -> Specialist:
    report = train_steps(p.model, p.optimizer, data, p.mix, sample_gradients=int(p.spec.budget), ledger=p.ledger,
                         seed=seed, loss_fn=loss_fn, step_fn=step_fn, label=f"specialist {p.id}",
                         stop=_patience_stop(p.spec), isolate_rng=isolate_rng)
    digest = state_dict_hash(p.model)
    if lineage is not None:
        lineage.add(p.id, "specialist", (parent,), step=step, state_hash=digest, data=p.data,
                    budget=int(p.spec.budget), spent=report.sample_gradients)
    return Specialist(p.id, p.spec, p.model, p.optimizer, report, p.ledger.summary(), digest, parent, step, p.data)


def record_generalist(lineage: Lineage, model: nn.Module, step: int, node_id: str | None = None) -> str:
    """Record the generalist at a fork point (once per weights hash) and return its node id."""
    digest = state_dict_hash(model)
    node_id = node_id or f"generalist@{step}"
    if node_id not in lineage:
        lineage.add(node_id, "generalist", (), step=step, state_hash=digest)
    elif lineage.get(node_id).state_hash != digest:
        raise FailedPrecondition(f"'{node_id}' is already recorded with other weights")
    return node_id


def fork_specialists(generalist: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource,
                     specs: Sequence[ForkSpec], *, train_indices: np.ndarray, seed: int,
                     loss_fn: Any = None, step_fn: Any = None, factory: Callable[[], nn.Module] | None = None,
                     ledger: Ledger | None = None, lineage: Lineage | None = None, step: int = 0,
                     parent: str | None = None, id_prefix: str = "s:") -> list[Specialist]:
    """Fork and train one specialist per spec, one after the other, on the calling thread."""
    lineage_ids = lineage if lineage is not None else Lineage()
    parent = parent or record_generalist(lineage_ids, generalist, step)
    prepared = _prepare(generalist, optimizer, data, specs, train_indices, factory, ledger, id_prefix,
                        lambda n: n in lineage_ids)
    return [_train(p, data, seed + i, loss_fn, step_fn, True, parent, step, lineage_ids)
            for i, p in enumerate(prepared)]


def has_stochastic_modules(model: nn.Module) -> bool:
    return any(isinstance(m, _STOCHASTIC) and getattr(m, "p", 1.0) != 0 for m in model.modules())


def start_fork(generalist: nn.Module, optimizer: torch.optim.Optimizer, data: DataSource, specs: Sequence[ForkSpec],
               *, train_indices: np.ndarray, seed: int, loss_fn: Any = None, step_fn: Any = None,
               factory: Callable[[], nn.Module] | None = None, ledger: Ledger | None = None,
               lineage: Lineage | None = None, step: int = 0, parent: str | None = None,
               id_prefix: str = "s:") -> "Future[list[Specialist]]":
    """Copy now (call at a step boundary), train on a worker thread while the generalist keeps going.

    Returns a Future of the specialists (several train in turn on one worker). Refuses models that draw
    random numbers while training (see the module docstring)."""
    if has_stochastic_modules(generalist):
        raise FailedPrecondition(
            "this model draws random numbers while training (dropout), and torch's RNG is shared by every "
            "thread: a specialist training beside the run would change the run's numbers. Fork with the run "
            "paused (background=False) instead")
    lineage_ids = lineage if lineage is not None else Lineage()
    parent = parent or record_generalist(lineage_ids, generalist, step)
    prepared = _prepare(generalist, optimizer, data, specs, train_indices, factory, ledger, id_prefix,
                        lambda n: n in lineage_ids)
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def work() -> None:
        try:
            future.set_result([_train(p, data, seed + i, loss_fn, step_fn, False, parent, step, lineage_ids)
                               for i, p in enumerate(prepared)])
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=work, name="onthefly-lab-fork", daemon=True).start()
    return future
