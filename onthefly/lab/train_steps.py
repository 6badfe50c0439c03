"""Train a model copy on chosen base-dataset indices, charging a ledger: the one training loop of the lab.

Every lab resolution (continue, upweight, specialists, merge fine-tunes) trains through ``train_steps``
so that compute is counted the same way for all of them. What it uses of the user's setup: the base
dataset behind the loader (through ``Subset``/``random_split``), the loader's collate function and batch
size, and the user's loss (or step function). What it never touches: the user's DataLoader object, its
sampler, batch sampler or workers — batches are built here by indexing the base dataset in the main
thread and collating with the user's ``collate_fn``.

Batches are drawn from a ``Mix``: pools of base indices, each filling a fixed fraction of every batch
(``uniform``: one pool, reshuffled each pass like ``shuffle=True``; ``upsample``: a focus set fills a
fraction of each batch, the rest comes from all data; ``weighted``: sampling with replacement in
proportion to per-sample weights). Sampling uses its own seeded generators; with ``isolate_rng`` the
global RNGs (torch for dropout; torch, numpy and ``random`` for the user's dataset augmentations) are
seeded for the run and restored afterwards, so the user's run draws the same random numbers as if nothing
had happened.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from onthefly.lab.budget import Ledger
from onthefly.lab.rng import kept_rng
from onthefly.runtime.errors import InvalidArgument
from onthefly.runtime.loader_tap import base_index_map
from onthefly.trainer.forward import Forward, to_device


# -- data --------------------------------------------------------------------------------------------
def base_dataset(dataset: Any) -> Any:
    """The dataset under any chain of ``Subset`` / ``random_split``: the one base indices index."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


@dataclass(frozen=True)
class DataSource:
    """Where training samples come from: the base dataset, the user's collate function and batch size."""

    dataset: Dataset
    batch_size: int
    collate_fn: Callable[[list], Any] = default_collate

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if isinstance(self.dataset, Subset):
            object.__setattr__(self, "dataset", base_dataset(self.dataset))

    @classmethod
    def from_loader(cls, loader: Any, batch_size: int | None = None) -> "DataSource":
        """Read (never iterate) the user's DataLoader: its base dataset, collate_fn and batch size."""
        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(base_dataset(dataset), "__getitem__"):
            raise InvalidArgument("the lab trains on a map-style dataset (one with __getitem__) behind a DataLoader; "
                                  "an IterableDataset has no sample indices to select")
        size = batch_size if batch_size is not None else getattr(loader, "batch_size", None)
        if size is None:
            raise InvalidArgument("the loader has no batch_size (it uses a batch_sampler); pass batch_size=...")
        return cls(base_dataset(dataset), int(size), getattr(loader, "collate_fn", None) or default_collate)

    @property
    def size(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def all_indices(self) -> np.ndarray:
        return np.arange(self.size, dtype=np.int64)

    def batch(self, indices: Sequence[int]) -> Any:
        """Collate the samples at these base indices, as the user's loader would."""
        if self.collate_fn is default_collate and type(self.dataset) is TensorDataset:
            # What default_collate makes of TensorDataset rows (a list of stacked tensors), without the
            # per-sample Python round trip.
            rows = torch.as_tensor(np.asarray(indices, dtype=np.int64))
            return [t[rows] for t in self.dataset.tensors]
        return self.collate_fn([self.dataset[int(i)] for i in indices])

    def check_indices(self, indices: np.ndarray, what: str) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            raise InvalidArgument(f"{what} is empty: there is nothing to train on")
        if indices.min() < 0 or indices.max() >= self.size:
            raise InvalidArgument(f"{what} holds indices outside the base dataset's 0..{self.size - 1}")
        return indices


def loader_base_indices(loader: Any) -> np.ndarray:
    """The base indices a loader's dataset covers (a Subset's members, or all of the base dataset)."""
    mapping = base_index_map(loader.dataset)
    return mapping.copy() if mapping is not None else np.arange(len(loader.dataset), dtype=np.int64)


# -- what each batch is drawn from ---------------------------------------------------------------------
@dataclass(frozen=True)
class Pool:
    """Base indices filling ``fraction`` of every batch; ``weights`` (same length) means with replacement."""

    indices: np.ndarray
    fraction: float
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class Mix:
    """The pools of a training run; fractions sum to 1."""

    pools: tuple[Pool, ...]

    def __post_init__(self) -> None:
        if not self.pools:
            raise InvalidArgument("a mix needs at least one pool of indices")
        total = sum(p.fraction for p in self.pools)
        if any(p.fraction <= 0 for p in self.pools) or abs(total - 1.0) > 1e-9:
            raise InvalidArgument(f"pool fractions must be positive and sum to 1, got "
                                  f"{[p.fraction for p in self.pools]}")

    def describe(self) -> dict:
        return {"pools": [{"size": int(p.indices.size), "fraction": p.fraction, "weighted": p.weights is not None}
                          for p in self.pools]}


def uniform(indices: np.ndarray) -> Mix:
    """Every batch from ``indices``, reshuffled on each pass (a plain shuffled loader)."""
    return Mix((Pool(np.asarray(indices, dtype=np.int64), 1.0),))


def upsample(indices: np.ndarray, focus: np.ndarray, fraction: float = 0.5) -> Mix:
    """``focus`` fills ``fraction`` of each batch; the rest is drawn from all of ``indices``."""
    if not 0.0 < fraction <= 1.0:
        raise InvalidArgument(f"the upsampled fraction must be in (0, 1], got {fraction}")
    focus = np.asarray(focus, dtype=np.int64)
    if fraction == 1.0:
        return uniform(focus)
    return Mix((Pool(focus, fraction), Pool(np.asarray(indices, dtype=np.int64), 1.0 - fraction)))


def replay(region: np.ndarray, rest: np.ndarray, replay_fraction: float) -> Mix:
    """A specialist's data: the region, with ``replay_fraction`` of each batch drawn from the rest."""
    if not 0.0 <= replay_fraction < 1.0:
        raise InvalidArgument(f"the replay fraction must be in [0, 1), got {replay_fraction}")
    region = np.asarray(region, dtype=np.int64)
    if replay_fraction == 0.0 or len(rest) == 0:
        return uniform(region)
    return Mix((Pool(region, 1.0 - replay_fraction), Pool(np.asarray(rest, dtype=np.int64), replay_fraction)))


def weighted(indices: np.ndarray, weights: np.ndarray) -> Mix:
    """Batches sampled with replacement in proportion to per-sample ``weights``."""
    indices = np.asarray(indices, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != indices.shape or not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
        raise InvalidArgument("weights must be finite, non-negative, not all zero, one per index")
    return Mix((Pool(indices, 1.0, weights / weights.sum()),))


class _PoolCursor:
    """Draws from one pool: shuffled passes without replacement, or weighted draws with replacement."""

    def __init__(self, pool: Pool, rng: np.random.Generator) -> None:
        self.pool, self.rng = pool, rng
        self.order = np.empty(0, dtype=np.int64)
        self.at = 0

    def take(self, n: int) -> np.ndarray:
        if self.pool.weights is not None:
            return self.rng.choice(self.pool.indices, size=n, replace=True, p=self.pool.weights)
        out = []
        while n > 0:
            if self.at >= self.order.size:
                self.order, self.at = self.rng.permutation(self.pool.indices), 0
            part = self.order[self.at:self.at + n]
            self.at += part.size
            n -= part.size
            out.append(part)
        return np.concatenate(out)


def batch_plan(mix: Mix, samples: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The index batches of a run: exactly ``samples`` indices in batches of ``batch_size`` (the last smaller),
    each batch split between the pools by their fractions (largest remainder). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    cursors = [_PoolCursor(p, rng) for p in mix.pools]
    fractions = np.array([p.fraction for p in mix.pools])
    batches = []
    left = samples
    while left > 0:
        b = min(batch_size, left)
        counts = np.floor(fractions * b).astype(int)
        short = b - counts.sum()
        if short:
            counts[np.argsort(-(fractions * b - counts), kind="stable")[:short]] += 1
        parts = [c.take(int(n)) for c, n in zip(cursors, counts) if n > 0]
        batch = np.concatenate(parts)
        batches.append(batch[rng.permutation(batch.size)])
        left -= b
    return batches


# -- training --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainReport:
    """What one ``train_steps`` call did."""

    sample_gradients: int
    steps: int
    mean_loss: float
    last_loss: float
    stopped_early: bool


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DataSource,
    mix: Mix,
    *,
    sample_gradients: int,
    ledger: Ledger,
    seed: int,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    step_fn: Callable[..., Any] | None = None,
    device: torch.device | str | None = None,
    label: str = "train",
    stop: Callable[[int, float], bool] | None = None,
    isolate_rng: bool = True,
) -> TrainReport:
    """Train ``model`` with ``optimizer`` on exactly ``sample_gradients`` samples drawn from ``mix``.

    The whole amount is checked against ``ledger`` first (BudgetExceeded before any step), then charged
    batch by batch. ``stop(samples_so_far, last_loss)``, called after each step, may end training early
    (patience); what was not spent stays in the ledger. ``model`` and ``optimizer`` must be copies the lab
    owns (see ``clone_model`` / ``clone_optimizer``): this trains them in place.
    """
    if isinstance(sample_gradients, bool) or not isinstance(sample_gradients, (int, np.integer)) \
            or sample_gradients < 1:
        raise InvalidArgument(f"the training budget must be a positive number of sample-gradients, "
                              f"got {sample_gradients!r}")
    sample_gradients = int(sample_gradients)
    for i, pool in enumerate(mix.pools):
        data.check_indices(pool.indices, f"pool {i} of the training data")
    ledger.require(sample_gradients)
    forward = Forward(loss_fn, step_fn, per_sample=False)
    device = torch.device(device) if device is not None else _model_device(model)
    plan = batch_plan(mix, sample_gradients, data.batch_size, seed)
    # Train as the run trains: a model in training mode keeps each submodule's own flag (a BatchNorm the user
    # froze stays frozen); one in eval mode is switched to training as a whole. Every flag is given back.
    modes = [(m, m.training) for m in model.modules()]
    spent = steps = 0
    total = last = 0.0
    stopped = False
    if not model.training:
        model.train()
    try:
        with kept_rng(seed) if isolate_rng else contextlib.nullcontext():
            for index in plan:
                batch = to_device(data.batch(index), device)
                optimizer.zero_grad(set_to_none=True)
                loss = forward(model, batch).loss
                ledger.charge(int(index.size), label)
                loss.backward()
                optimizer.step()
                spent += int(index.size)
                steps += 1
                last = float(loss.detach())
                total += last * index.size
                if stop is not None and spent < sample_gradients and stop(spent, last):
                    stopped = True
                    break
    finally:
        optimizer.zero_grad(set_to_none=True)
        for module, training in modes:
            module.training = training
    return TrainReport(spent, steps, total / max(spent, 1), last, stopped)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


# -- copies the lab owns -----------------------------------------------------------------------------------
def clone_model(model: torch.nn.Module, factory: Callable[[], torch.nn.Module] | None = None) -> torch.nn.Module:
    """A separate model with ``model``'s weights and buffers: ``copy.deepcopy``, or ``factory()`` +
    ``load_state_dict`` for models that cannot be deep-copied (never ``type(model)()``)."""
    if factory is None:
        clone = copy.deepcopy(model)
    else:
        clone = factory()
        if not isinstance(clone, torch.nn.Module):
            raise InvalidArgument(f"the model factory returned {type(clone).__name__}, not an nn.Module")
        clone.load_state_dict(model.state_dict())
        clone.to(_model_device(model))
    modes = {name: m.training for name, m in model.named_modules()}
    for name, module in clone.named_modules():  # each submodule's own flag (a frozen BatchNorm stays frozen)
        module.training = modes.get(name, model.training)
    return clone


def clone_optimizer(optimizer: torch.optim.Optimizer, source: torch.nn.Module,
                    target: torch.nn.Module) -> torch.optim.Optimizer:
    """``optimizer``'s class, hyperparameters and state (moments, step counts), forked onto ``target``'s
    parameters, matched to ``source``'s by name. The original optimizer is not touched."""
    names = {id(p): n for n, p in source.named_parameters()}
    targets = dict(target.named_parameters())
    groups = []
    for group in optimizer.param_groups:
        try:
            params = [targets[names[id(p)]] for p in group["params"]]
        except KeyError:
            raise InvalidArgument("the optimizer holds parameters that are not the model's; fork the model the "
                                  "optimizer trains") from None
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    forked = type(optimizer)(groups, **_constructor_defaults(optimizer))
    forked.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return forked


def _constructor_defaults(optimizer: torch.optim.Optimizer) -> dict:
    # Every group carries its own hyperparameters; the defaults only satisfy constructors that require an
    # argument (e.g. lr) even when each group sets it.
    import inspect

    accepted = inspect.signature(type(optimizer).__init__).parameters
    return {k: v for k, v in optimizer.defaults.items() if k in accepted}
