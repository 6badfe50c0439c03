"""The scoring pass: one eval-mode, no-grad look at every sample of a dataset, in index order.

    table = score(model, train_dataset, loss_fn=nn.CrossEntropyLoss())

Every sample is seen exactly once (sequential order, no ``drop_last``), through our own DataLoader
over the user's dataset and collate function (never the user's DataLoader or sampler). The pass runs
under a forked, seeded RNG and restores every RNG it could touch (torch CPU and CUDA, numpy, Python's
``random``) and each module's own train/eval flag, so training afterwards is bit-identical to training
without it. It records, per sample, the base-dataset index (through ``Subset``/``random_split``), label,
loss, margin, predicted label, correctness, class probabilities and an embedding captured by a forward
hook, together with the hash of the weights it scored.

Run it on the training thread at a step boundary, or on a copy of the model on another thread; it
never mutates the model it is given.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from onthefly.lab.rng import kept_rng
from onthefly.runtime.errors import InvalidArgument, NotFound
from onthefly.runtime.loader_tap import base_index_map
from onthefly.runtime.per_sample import PerSampleLoss

LAST_LINEAR_INPUT = "<input of the last nn.Linear>"


@dataclass(frozen=True, eq=False)
class ScoreTable:
    """Per-sample columns of one scoring pass (row i describes base index ``index[i]``)."""

    index: np.ndarray  # int64 base-dataset index
    label: np.ndarray  # int64
    loss: np.ndarray  # float32 per-sample loss under the scoring loss function
    margin: np.ndarray  # float32 p[label] - max_{k != label} p[k]; negative means misclassified
    pred: np.ndarray  # int64 argmax class
    correct: np.ndarray  # bool pred == label
    probs: np.ndarray  # float32 (N, C) softmax of the outputs
    embedding: np.ndarray  # float32 (N, D) the hooked layer's activations, flattened
    state_hash: str  # state_dict_hash of the weights scored
    layer: str  # which activation ``embedding`` holds
    split: str = "train"
    step: int | None = None  # the training step after which the weights were scored, when known

    def __len__(self) -> int:
        return len(self.index)

    def positions(self, base_indices: Any) -> np.ndarray:
        """Row positions of the given base indices; ``NotFound`` names the first index not in this table."""
        wanted = np.asarray(base_indices, dtype=np.int64).reshape(-1)
        order = np.argsort(self.index, kind="stable")
        ordered = self.index[order]
        found = np.searchsorted(ordered, wanted)
        ok = found < len(ordered)
        ok[ok] = ordered[found[ok]] == wanted[ok]
        if not ok.all():
            bad = int(wanted[np.flatnonzero(~ok)[0]])
            raise NotFound(f"base index {bad} is not in this {self.split} score table ({len(self)} samples)")
        return order[found]

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self) else float("nan")

    @property
    def mean_loss(self) -> float:
        return float(self.loss.mean()) if len(self) else float("nan")


def state_dict_hash(source: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in key order: equal iff the weights are.

    Same algorithm as ``onthefly.lab.merges.result.state_dict_hash``, so hashes compare across the lab.
    """
    state = source.state_dict() if isinstance(source, nn.Module) else source
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def score(model: nn.Module, dataset: Dataset, *, loss_fn: Callable[..., torch.Tensor] | None = None,
          layer: str | None = None, batch_size: int = 256, collate_fn: Callable[[list], Any] | None = None,
          seed: int = 0, device: torch.device | str | None = None, split: str = "train",
          step: int | None = None) -> ScoreTable:
    """Score every sample of ``dataset`` once with ``model`` (see the module docstring).

    ``loss_fn`` defaults to cross-entropy; ``layer`` names a module (as in ``model.named_modules()``)
    whose output is the embedding, default the input of the last ``nn.Linear``. Batches are expected
    as ``(inputs, targets, ...)`` like a supervised DataLoader yields.
    """
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    hooked, layer_name, use_input = _embedding_layer(model, layer)
    per_sample = PerSampleLoss(loss_fn if loss_fn is not None else nn.CrossEntropyLoss())
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=0,
                        collate_fn=collate_fn)
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple, output: Any = None) -> None:
        value = args[0] if use_input else output
        if not isinstance(value, torch.Tensor):
            raise InvalidArgument(f"layer {layer_name!r} produced {type(value).__name__}, not a tensor; name another layer")
        captured.append(value.detach().reshape(value.shape[0], -1).float().cpu())

    handle = hooked.register_forward_pre_hook(keep) if use_input else hooked.register_forward_hook(keep)
    labels, losses, probs = [], [], []
    state_hash = state_dict_hash(model)
    try:
        with _preserved(model, seed), torch.no_grad():
            for batch in loader:
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise InvalidArgument(f"score() needs batches of (inputs, targets, ...); got {type(batch).__name__}")
                inputs, targets = _to(batch[0], device), _to(batch[1], device)
                outputs = model(inputs)
                if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2 or outputs.shape[1] < 2:
                    raise InvalidArgument("score() needs a classifier returning (batch, classes) logits with at "
                                          "least 2 classes")
                losses.append(per_sample(outputs, targets).float().cpu())
                probs.append(torch.softmax(outputs.float(), dim=1).cpu())
                labels.append(targets.reshape(-1).long().cpu())
    finally:
        handle.remove()
    if not labels:
        raise InvalidArgument("the dataset is empty: nothing to score")
    return _table(torch.cat(labels), torch.cat(losses), torch.cat(probs), torch.cat(captured),
                  _base_indices(dataset), state_hash, layer_name, split, step)


def embed(model: nn.Module, inputs: torch.Tensor | np.ndarray, *, layer: str | None = None,
          batch_size: int = 1024, seed: int = 0) -> np.ndarray:
    """The embedding ``score`` would record for raw inputs (no labels): what a label-free router needs."""
    hooked, layer_name, use_input = _embedding_layer(model, layer)
    x = torch.as_tensor(inputs)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple, output: Any = None) -> None:
        value = args[0] if use_input else output
        captured.append(value.detach().reshape(value.shape[0], -1).float().cpu())

    handle = hooked.register_forward_pre_hook(keep) if use_input else hooked.register_forward_hook(keep)
    try:
        with _preserved(model, seed), torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size].to(device))
    finally:
        handle.remove()
    return torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)


def _embedding_layer(model: nn.Module, layer: str | None) -> tuple[nn.Module, str, bool]:
    """(module to hook, its description, hook its input?)."""
    modules = dict(model.named_modules())
    if layer is not None:
        if layer not in modules:
            names = [n for n in modules if n][:20]
            raise InvalidArgument(f"no layer named {layer!r} in {type(model).__name__}; "
                             f"layers are: {', '.join(names) or '(none)'}")
        return modules[layer], layer, False
    linears = [(name, m) for name, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidArgument(f"{type(model).__name__} has no nn.Linear; pass layer= naming the module whose "
                         "output is the embedding")
    name, module = linears[-1]
    return module, f"input of {name}", True


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _base_indices(dataset: Dataset) -> np.ndarray:
    mapping = base_index_map(dataset)
    return mapping.copy() if mapping is not None else np.arange(len(dataset), dtype=np.int64)  # type: ignore[arg-type]


@contextmanager
def _preserved(model: nn.Module, seed: int) -> Iterator[None]:
    """Eval mode under a seeded, forked RNG; afterwards every module's flag and every RNG as they were."""
    flags = [(m, m.training) for m in model.modules()]
    # kept_rng seeds only the generators it restores: torch.manual_seed would also seed CUDA devices it does not
    # restore (every device but the current one; before CUDA starts, a queued seed that replaces the user's).
    try:
        with kept_rng(seed):
            model.eval()
            yield
    finally:
        for module, training in flags:
            module.training = training


def _table(labels: torch.Tensor, losses: torch.Tensor, probs: torch.Tensor, embedding: torch.Tensor,
           index: np.ndarray, state_hash: str, layer: str, split: str, step: int | None) -> ScoreTable:
    n = len(labels)
    if len(index) != n or len(embedding) != n:
        raise RuntimeError(f"scoring saw {n} labels, {len(embedding)} embeddings and {len(index)} indices; "
                           "the hooked layer must run once per batch")
    y = labels.numpy().astype(np.int64)
    p = probs.numpy().astype(np.float32)
    pred = p.argmax(axis=1).astype(np.int64)
    valid = (y >= 0) & (y < p.shape[1])
    if not np.all(valid):
        raise InvalidArgument(f"label {int(y[~valid][0])} is outside the model's {p.shape[1]} classes")
    rows = np.arange(n)
    true_p = p[rows, y]
    others = p.copy()
    others[rows, y] = -np.inf
    margin = (true_p - others.max(axis=1)) if p.shape[1] > 1 else true_p
    return ScoreTable(index=index.astype(np.int64), label=y, loss=losses.numpy().astype(np.float32),
                      margin=margin.astype(np.float32), pred=pred, correct=pred == y, probs=p,
                      embedding=embedding.numpy().astype(np.float32), state_hash=state_hash, layer=layer,
                      split=split, step=step)
