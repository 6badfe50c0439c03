"""Iterate the user's DataLoader unchanged while learning each batch's dataset indices.

The user's DataLoader, sampler, batch sampler, collate function and workers are used as they are.
We build the loader's own iterator class over a read-only view of the loader whose index sampler is
wrapped by a tap: the tap records every index batch the user's (batch) sampler yields, in order,
before workers fetch it. Batches come back in that order (``in_order=True``, the default), so the
i-th batch received matches the i-th recorded index list, prefetching included. RNG use is exactly
that of ``iter(loader)``.

Indices are mapped through ``Subset`` / ``random_split`` chains to the base dataset. Where the tap
cannot apply (IterableDataset, a DataLoader subclass with its own ``__iter__``, ``in_order=False``)
batches are still yielded unchanged and indices are reported as -1.

The tap can also skip the first ``k`` index batches of an epoch without loading them, which is how
an imported session continues mid-epoch.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.dataloader import _DatasetKind

from onthefly.runtime.events import base_indices
from onthefly.runtime.host_values import indices_now


_END = object()


def base_index_map(dataset: Any) -> np.ndarray | None:
    """Array mapping loader-dataset indices to base-dataset indices, or None if they are the same."""
    mapping = None
    while isinstance(dataset, Subset):
        level = np.asarray(dataset.indices, dtype=np.int64)
        mapping = level if mapping is None else level[mapping]
        dataset = dataset.dataset
    return mapping


class _IndexTap:
    """Wraps the user's index sampler; records each index batch it yields (optionally skipping some)."""

    def __init__(self, inner: Any, fifo: collections.deque, auto_collation: bool) -> None:
        self.inner = inner
        self.fifo = fifo
        self.auto_collation = auto_collation
        self.skip = 0
        self.then: Callable[[], None] | None = None
        self.on_start: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.on_start is not None:
            self.on_start()  # may call skip_batches for this very pass
        skip, then = self.skip, self.then
        self.skip, self.then = 0, None
        it = iter(self.inner)
        for _ in range(skip):
            if next(it, _END) is _END:
                break
        if then is not None:
            then()
        for index in it:
            # A batch of indices, or one index (reshaped to [i] later); tensors as numpy copies (see host_values).
            self.fifo.append(indices_now(index))
            yield index

    def __len__(self) -> int:
        return len(self.inner)


class _LoaderView:
    """Read-only view of a DataLoader whose ``_index_sampler`` is the tap. Everything else delegates."""

    def __init__(self, loader: DataLoader, tap: _IndexTap) -> None:
        object.__setattr__(self, "_loader", loader)
        object.__setattr__(self, "_index_sampler", tap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _tappable(loader: Any) -> bool:
    cls = type(loader)
    return (
        isinstance(loader, DataLoader)
        and cls.__iter__ is DataLoader.__iter__
        and cls._get_iterator is DataLoader._get_iterator
        and loader._dataset_kind == _DatasetKind.Map
        and getattr(loader, "in_order", True)
    )


class TappedLoader:
    """Yields ``(batch, indices)`` for each batch of ``loader``; ``indices`` is an int64 array.

    ``skip_batches(k)`` makes the next epoch start after its first k batches (not loaded).
    ``on_epoch_sampling(fn)`` calls ``fn()`` each time an epoch starts drawing from the sampler.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.tappable = _tappable(loader)
        self._fifo: collections.deque = collections.deque()
        self._mapping = base_index_map(getattr(loader, "dataset", None)) if self.tappable else None
        self._tap = None
        self._view = None
        self._persistent_iter = None
        if self.tappable:
            self._tap = _IndexTap(loader._index_sampler, self._fifo, loader._auto_collation)
            self._view = _LoaderView(loader, self._tap)

    def skip_batches(self, count: int, then: Callable[[], None] | None = None) -> None:
        """Start the next epoch after its first ``count`` batches; ``then()`` runs once they have been
        drawn from the sampler (not loaded), before any batch is loaded."""
        if count and not self.tappable:
            raise RuntimeError("cannot resume mid-epoch: this DataLoader's batch order cannot be replayed")
        if self._tap is not None:
            self._tap.skip, self._tap.then = count, then
        elif then is not None:
            then()

    def on_epoch_sampling(self, callback: Callable[[], None] | None) -> bool:
        """Call ``callback()`` whenever an epoch starts drawing from the sampler: after the DataLoader
        iterator drew its base seed, before the sampler draws anything. False if it cannot tap."""
        if self._tap is None:
            return False
        self._tap.on_start = callback
        return True

    @property
    def reuses_iterator(self) -> bool:
        """True when the next epoch reuses persistent workers (its iterator draws no new base seed)."""
        loader = self.loader
        if not (getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0):
            return False
        if self.tappable:
            return self._persistent_iter is not None
        return getattr(loader, "_iterator", None) is not None

    def __len__(self) -> int:
        return len(self.loader)

    def _new_iterator(self) -> Any:
        loader = self.loader
        if not self.tappable:
            return iter(loader)
        self._fifo.clear()
        if loader.persistent_workers and loader.num_workers > 0:
            if self._persistent_iter is None:
                self._persistent_iter = loader._get_iterator.__func__(self._view)
            else:
                self._persistent_iter._reset(self._view)
            return self._persistent_iter
        return loader._get_iterator.__func__(self._view)

    @property
    def index_map(self) -> np.ndarray | None:
        """Loader index -> base dataset index (through Subset / random_split), or None when they are equal."""
        return self._mapping

    def raw(self) -> Iterator[tuple[Any, Any]]:
        """Yields ``(batch, index)`` with each index batch exactly as the sampler yielded it (None when
        unknown). The training loop iterates this and leaves the conversion to base indices (``index_map``)
        to the bus's pump thread; ``__iter__`` converts in place."""
        it = self._new_iterator()
        if not self.tappable:
            for batch in it:
                yield batch, None
            return
        fifo = self._fifo
        for batch in it:
            yield batch, fifo.popleft() if fifo else None

    def __iter__(self) -> Iterator[tuple[Any, np.ndarray | None]]:
        mapping = self._mapping
        for batch, index in self.raw():
            yield batch, base_indices(index, mapping)


def batch_len(batch: Any) -> int:
    """Number of samples in a collated batch (first tensor's leading dimension)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        for value in batch.values():
            n = batch_len(value)
            if n:
                return n
        return 0
    if isinstance(batch, (list, tuple)):
        for value in batch:
            n = batch_len(value)
            if n:
                return n
        return 0
    return 0
