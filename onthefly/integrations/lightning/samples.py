"""Per-sample losses under Lightning, through the module's own loss, and the dataset index of each sample.

Losses. The LightningModule computes its loss inside ``training_step``; OnTheFly never calls that. A
forward hook on the module's loss module (an ``nn.Module`` loss such as ``self.loss_fn =
nn.CrossEntropyLoss()``, found automatically or named with ``loss_fn=``) sees the ``(pred, target)``
of the first loss call of each batch; the per-sample vector is then computed beside it, under no_grad,
exactly as the native Trainer does. The hook is removed when fit ends.

Modules whose loss is not one ``loss(pred, target)`` call return it themselves (the documented hook)::

    def training_step(self, batch, batch_idx):
        ...
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}     # shape [batch]

and may add ``"sample_indices"`` (dataset indices, shape [batch]) the same way.

Indices. Lightning iterates the loader itself and OnTheFly does not wrap it, so the index of each
batch is replayed from the sampler where that has no side effects: ``SequentialSampler`` (validation,
unshuffled training) and ``DistributedSampler`` (which Lightning installs under DDP; its order is a
pure function of seed and epoch). Other samplers inside a plain ``BatchSampler`` (``shuffle=True`` on
one device) are followed as the native Trainer follows them: ``SamplerTap`` records each index the
batch sampler draws from the user's sampler, in order, as it draws it (the sampler, its RNG use and
the loader are untouched), and each batch Lightning hands over takes the next ``len(batch)`` of them.
Anything else reports -1 unless ``training_step`` returns ``"sample_indices"``.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
from torch.utils.data.dataloader import _DatasetKind
from torch.utils.data.distributed import DistributedSampler

from onthefly.runtime.loader_tap import base_index_map
from onthefly.runtime.per_sample import PerSampleLoss, detach

log = logging.getLogger("onthefly")

LOSS_ATTRIBUTES = ("loss_fn", "criterion", "loss_func", "loss_function", "loss_module")
PER_SAMPLE_KEY = "per_sample_loss"
INDICES_KEY = "sample_indices"
_REPLAYABLE = (SequentialSampler, DistributedSampler)  # exact types: subclasses may wrap other samplers


def find_loss(module: nn.Module) -> Any:
    """The module's loss: its first ``nn.Module`` loss submodule, else a callable loss attribute, else None."""
    for _, sub in module.named_modules():
        if isinstance(sub, nn.modules.loss._Loss):
            return sub
    for name in LOSS_ATTRIBUTES:
        value = getattr(module, name, None)
        if callable(value):
            return value
    return None


class LossTap:
    """Captures the (pred, target) of the first call to ``loss_module`` while armed; ``take`` -> per-sample."""

    def __init__(self, loss_module: nn.Module) -> None:
        self.per_sample = PerSampleLoss(loss_module)
        self._armed = False
        self._captured: tuple[Any, Any] | None = None
        self._handle = loss_module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not self._armed or self._captured is not None:
            return
        pred = args[0] if args else kwargs.get("input")
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if pred is not None and target is not None:
            self._captured = (detach(pred), detach(target))

    def arm(self) -> None:
        self._armed, self._captured = True, None

    def take(self) -> tuple[torch.Tensor | None, Any, Any]:
        """(per-sample losses or None, pred, target) of the batch since ``arm``; disarms."""
        self._armed = False
        captured, self._captured = self._captured, None
        if captured is None:
            return None, None, None
        pred, target = captured
        try:
            with torch.no_grad():
                return self.per_sample(pred, target), pred, target
        except Exception as exc:  # telemetry must never break the user's step
            log.debug("onthefly: per-sample loss failed: %s", exc)
            return None, pred, target

    def remove(self) -> None:
        self._handle.remove()


def step_output_values(outputs: Any) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """``per_sample_loss`` and ``sample_indices`` a step returned in its output dict, if any."""
    if not isinstance(outputs, dict):
        return None, None
    per_sample = outputs.get(PER_SAMPLE_KEY)
    indices = outputs.get(INDICES_KEY)
    if isinstance(per_sample, torch.Tensor):
        per_sample = per_sample.detach().reshape(-1)
    else:
        per_sample = None
    if indices is not None:
        indices = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices,
                             dtype=np.int64).reshape(-1)
    return per_sample, indices


def epoch_index_batches(loader: Any) -> list[np.ndarray] | None:
    """The base-dataset indices of every batch ``loader`` yields this epoch, when the sampler replays cleanly."""
    if not isinstance(loader, DataLoader) or loader._dataset_kind != _DatasetKind.Map:
        return None
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None:
        if type(batch_sampler) is not BatchSampler or type(batch_sampler.sampler) not in _REPLAYABLE:
            return None
        batches = [np.asarray(b, dtype=np.int64) for b in batch_sampler]
    else:
        if type(loader.sampler) not in _REPLAYABLE:
            return None
        batches = [np.asarray([i], dtype=np.int64) for i in loader.sampler]
    mapping = base_index_map(loader.dataset)
    return [mapping[b] for b in batches] if mapping is not None else batches


class _Recorder:
    """Stands in the batch sampler's ``sampler`` slot: iterates the user's sampler and yields exactly what
    it yields, noting each index. Any other attribute reads through to the user's sampler."""

    def __init__(self, inner: Any, fifo: collections.deque) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_fifo", fifo)

    def __iter__(self) -> Iterator[Any]:
        fifo = self._fifo
        fifo.clear()  # a new pass: what the last one drew and no batch took (drop_last) is not this epoch's
        for index in self._inner:
            fifo.append(index)
            yield index

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SamplerTap:
    """Follows the order of a train loader whose sampler cannot be replayed (``shuffle=True``).

    Install before the epoch's iterator draws from the sampler; ``take(n)`` gives the base-dataset indices
    of the next batch of ``n`` samples, or None when this pass was drawn before the tap was installed;
    ``remove()`` puts the user's sampler back in its slot."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self._batch_sampler = loader.batch_sampler
        self._inner = self._batch_sampler.sampler
        self._fifo: collections.deque = collections.deque()
        self._mapping = base_index_map(loader.dataset)
        self._batch_sampler.sampler = _Recorder(self._inner, self._fifo)

    @staticmethod
    def applies(loader: Any) -> bool:
        """A map-style DataLoader with a plain BatchSampler over a sampler that does not replay cleanly."""
        return (isinstance(loader, DataLoader) and loader._dataset_kind == _DatasetKind.Map
                and type(loader.batch_sampler) is BatchSampler
                and type(loader.batch_sampler.sampler) not in _REPLAYABLE
                and not isinstance(loader.batch_sampler.sampler, _Recorder))

    def take(self, count: int) -> np.ndarray | None:
        fifo = self._fifo
        if count <= 0 or len(fifo) < count:
            fifo.clear()  # drawn before the tap: this pass reports -1 rather than misattribute indices
            return None
        batch = np.asarray([fifo.popleft() for _ in range(count)], dtype=np.int64)
        return self._mapping[batch] if self._mapping is not None else batch

    def remove(self) -> None:
        if isinstance(self._batch_sampler.sampler, _Recorder):
            self._batch_sampler.sampler = self._inner
