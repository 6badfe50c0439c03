"""The routed result of a fork: experts + a label-free router, as ONE ``nn.Module``.

Entry point for ``resolutions.py`` (fork + route) and ``apply``::

    routed = build_routed(generalist, specialists, region_set, factory=user_factory)  # RoutedModel
    # specialists[r] is region_set.regions[r]'s specialist; region_set.layer names the embedding used
    logits = routed(x)                     # evaluate it like any model; routed.route(x) says who answered
    save_routed(routed, "routed.pt")       # = torch.save(routed.state_dict()): tensors + a few plain fields
    again = load_routed("routed.pt", user_factory)   # torch.load(weights_only=True), same predictions
    cost = inference_cost(routed, generalist, x)     # FLOPs and measured time per sample vs one model

Expert 0 is the generalist: it answers every sample outside the regions and, on the way, yields the
embedding the router reads (the input of its last ``nn.Linear`` by default, or the output of a named
layer: the same convention as ``onthefly.lab.scoring``). Expert ``r + 1`` is the specialist of region
``r``. The router is the region assignment the lab discovered (``RegionSet.assign``), rebuilt in torch:
an affine map of the input and of the embedding per ``onthefly.lab.features``, then the nearest k-means
centroid (one linear score per centroid, folded from the map), then that cluster's expert (0 for
clusters that are not regions). No labels enter it.

Inference runs the generalist on the whole batch and each specialist only on the samples routed to it
(about 1 + the routed fraction of one model's FLOPs, plus the router's two small matmuls: k x (input + embedding
features) multiply-adds per sample, 768 for digits-shift's 8 centroids, 64 inputs and 32-wide embedding, i.e. 23% of
its 64-32-32-10 MLP). Answers are bit-identical to that definition: the generalist's own output outside the
regions, each specialist's output on exactly its samples. In eager mode a plain ``nn.Sequential`` generalist is
replayed child by child (the router reads the input before the first layer and the embedding where it is made,
both still in cache), a specialist's samples are found from the scores once, and its answers are written into
the generalist's fresh output. What remains on CPU (``benchmarks/bench_lab_routing.py``): the router's matmuls
(~23% of the generalist's time at 8192 rows, one thread) and, at small batches, the fixed cost of each extra
operator (about 15 of them, a few microseconds each). Under ``torch.export`` (or with ``dense=True``) every
expert runs on the whole batch and the answer is gathered, which keeps shapes static; the exported program takes
any batch size. The model takes one tensor input.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.modules.module as _module_hooks

from onthefly.lab.train_steps import clone_model
from onthefly.runtime.errors import InvalidArgument

FORMAT = "onthefly-routed-model"
VERSION = 1


def _dense(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous copy with ordinary strides (an empty tensor loaded from a file may carry stride 0)."""
    return torch.empty(t.shape, dtype=dtype, device=t.device).copy_(t)


# A block's mean is folded into the router's bias when its norm is at most this many times the block's spread
# (``scale``: the RMS norm of the centred fitted data in its PCA subspace). Folding saves a (batch, features)
# subtraction per call; float32's rounding error in the score then grows about (1 + ratio)-fold, still ~1e-6
# of O(1) squared distances. Inputs with a large offset (e.g. 1e4 +- 0.01) keep the centring.
FOLD_MEAN_RATIO = 4.0


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as (batch, features) float32, without a dispatch when it already is."""
    t = t if t.dim() == 2 else t.reshape(t.shape[0], -1)
    return t if t.dtype == torch.float32 else t.to(torch.float32)


class CentroidRouter(nn.Module):
    """Route = expert of the nearest centroid in the regions' feature space.

    The feature map is affine per block and only the nearest centroid matters, so the squared distance
    ``|f|^2 - 2 f.c_k + |c_k|^2`` loses its per-sample term and the rest folds into one linear score per
    centroid: ``(x - input_mean) @ input_weight.T + (embedding - embedding_mean) @ embedding_weight.T +
    bias``, lowest wins (two small matmuls instead of a projection and a (batch, clusters, dims) distance
    tensor; weights are stored (clusters, features) and applied as ``W @ a.T``). A block whose mean is near
    zero relative to its spread has it folded into ``bias`` and stores an empty mean (see FOLD_MEAN_RATIO);
    one far from zero is centred first, which keeps float32 exact there (folding would cancel large numbers).
    A block with no features is unused.
    ``cluster_expert[c]`` is the expert of centroid ``c``. Scores are float32, like the models: squared
    distances in this unit-variance space are O(1) apart and float32's error is about 1e-6, so a route
    differs from ``RegionSet.assign``'s float64 one only at an exact tie (none in the tests' samples).
    """

    def __init__(self, input_mean: torch.Tensor, input_weight: torch.Tensor, embedding_mean: torch.Tensor,
                 embedding_weight: torch.Tensor, bias: torch.Tensor, cluster_expert: torch.Tensor) -> None:
        super().__init__()
        f32 = torch.float32
        self.register_buffer("input_mean", _dense(input_mean.reshape(-1), f32))
        self.register_buffer("input_weight", _dense(input_weight, f32))
        self.register_buffer("embedding_mean", _dense(embedding_mean.reshape(-1), f32))
        self.register_buffer("embedding_weight", _dense(embedding_weight, f32))
        self.register_buffer("bias", _dense(bias.reshape(-1), f32))
        self.register_buffer("cluster_expert", _dense(cluster_expert.reshape(-1), torch.int64))
        k = self.bias.numel()
        for name in ("input_weight", "embedding_weight"):
            w = getattr(self, name)
            if w.dim() != 2 or w.shape[0] != k:
                raise InvalidArgument(f"{name} must be ({k}, features) for {k} centroids, got {tuple(w.shape)}")
        for mean, weight in ((self.input_mean, self.input_weight), (self.embedding_mean, self.embedding_weight)):
            if mean.numel() not in (0, weight.shape[1]):
                raise InvalidArgument("each block's mean needs one value per feature of its weight (or none when "
                                      "it is folded into the bias)")
        if self.cluster_expert.numel() != k:
            raise InvalidArgument("cluster_expert needs one expert index per centroid")
        if not (self.uses_input or self.uses_embedding):
            raise InvalidArgument("the router has an empty feature space")
        # Plain flags read per call (buffer lookups through nn.Module.__getattr__ cost more at small batches);
        # they depend on shapes only, which load_state_dict cannot change.
        self._use_input, self._use_embedding = self.uses_input, self.uses_embedding
        self._center_input, self._center_embedding = self.input_mean.numel() > 0, self.embedding_mean.numel() > 0
        self._bias_source: torch.Tensor | None = None  # see _scores_t
        self._bias_column = self.bias.unsqueeze(1)

    @classmethod
    def shaped_like(cls, state: dict[str, torch.Tensor], prefix: str = "") -> "CentroidRouter":
        """An empty router with the shapes of a saved one (then ``load_state_dict`` fills it)."""
        names = ("input_mean", "input_weight", "embedding_mean", "embedding_weight", "bias", "cluster_expert")
        try:
            return cls(*(torch.ones_like(state[prefix + n]) for n in names))
        except KeyError as exc:
            raise InvalidArgument(f"the checkpoint has no router entry {exc.args[0]!r}: it is not a routed model") \
                from None

    @property
    def uses_input(self) -> bool:
        return self.input_weight.shape[1] > 0

    @property
    def uses_embedding(self) -> bool:
        return self.embedding_weight.shape[1] > 0

    def scores(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(batch, centroids): squared distance to each centroid minus the sample's own squared norm."""
        return self._scores_t(x, embedding).t()

    def _scores_t(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        # (centroids, batch): ``W @ a.T`` is one wide matmul, measured 2-3x faster on CPU than ``a @ W.T`` into
        # `centroids` columns (nn.Linear's layout) for these shapes; addmm adds the bias column on the way and
        # the second block accumulates in place. An empty mean was folded into the bias: no (batch, features)
        # temporary, which on CPU costs a fresh allocation (page faults) about as long as the generalist's own
        # first layer at large batches.
        return self._add_embedding_part(self._input_part(x), embedding)

    def _input_part(self, x: torch.Tensor) -> torch.Tensor:
        """bias + the input block's scores, (centroids, batch); the bias column (centroids, 1) alone when the
        router does not read the input. Buffers are read from ``_buffers`` and no-op reshapes/casts skipped: at
        small batches each Python-level step costs about as much as a small matmul."""
        buffers = self._buffers
        bias = buffers["bias"]
        if self._bias_source is bias:  # a view of the buffer: stays current when it is written in place
            out = self._bias_column
        elif torch.compiler.is_compiling():  # export traces stand-in buffers: keep no state of them
            out = bias.unsqueeze(1)
        else:
            self._bias_source, self._bias_column = bias, bias.unsqueeze(1)
            out = self._bias_column
        if self._use_input:
            a = _rows(x)
            a = a - buffers["input_mean"] if self._center_input else a
            out = torch.addmm(out, buffers["input_weight"], a.t())
        return out

    def _add_embedding_part(self, out: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``_input_part``'s result + the embedding block's scores (into ``out`` when it is a fresh tensor)."""
        if not self._use_embedding:
            return out
        buffers = self._buffers
        e = _rows(embedding)
        e = e - buffers["embedding_mean"] if self._center_embedding else e
        if self._use_input and not (e.requires_grad and torch.is_grad_enabled()):
            # in place, as out= (torch.utils.flop_counter counts addmm and its out= form, not addmm_)
            return torch.addmm(out, buffers["embedding_weight"], e.t(), out=out)
        return torch.addmm(out, buffers["embedding_weight"], e.t())

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.cluster_expert.index_select(0, self.nearest(x, embedding))

    def nearest(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Each sample's nearest centroid (the first one on an exact tie, like argmin)."""
        # torch.min over dim 0 of the (centroids, batch) scores: measured 2.5x faster on CPU than argmin(1) of a
        # contiguous transposed copy and 15x faster than argmin(0)
        return torch.min(self._scores_t(x, embedding), dim=0).indices


class RoutedModel(nn.Module):
    """``experts[0]`` (the generalist) + specialists + a ``CentroidRouter``; ``forward(x)`` gives logits."""

    def __init__(self, experts: Sequence[nn.Module], router: CentroidRouter, *, hook_module: str,
                 hook_input: bool, dense: bool = False) -> None:
        super().__init__()
        if len(experts) < 1:
            raise InvalidArgument("a routed model needs at least the generalist")
        self.experts = nn.ModuleList(experts)
        self.router = router
        self.hook_module = hook_module
        self.hook_input = hook_input
        self.dense = dense
        modules = dict(self.experts[0].named_modules())
        if hook_module not in modules:
            raise InvalidArgument(f"the generalist has no layer named {hook_module!r}; layers are: "
                                  f"{', '.join(n for n in modules if n)[:300]}")
        self._owned_source: torch.Tensor | None = None  # see _single_centroids
        self._owned_version = -1
        self._single: list[tuple[int, int]] | None = None
        top = int(router.cluster_expert.max()) if router.cluster_expert.numel() else 0
        if top >= len(experts) or (router.cluster_expert.numel() and int(router.cluster_expert.min()) < 0):
            raise InvalidArgument(f"the router sends samples to expert {top} but there are {len(experts)} experts")

    def get_extra_state(self) -> dict[str, Any]:
        """What the state dict must carry besides tensors to rebuild this model (plain, weights-only safe)."""
        return {"format": FORMAT, "version": VERSION, "experts": len(self.experts), "hook_module": self.hook_module,
                "hook_input": bool(self.hook_input)}

    def set_extra_state(self, state: Any) -> None:
        _check_structure(state)
        if int(state["experts"]) != len(self.experts) or str(state["hook_module"]) != self.hook_module \
                or bool(state["hook_input"]) != self.hook_input:
            raise InvalidArgument("this state dict belongs to a routed model of another shape; rebuild it with "
                                  "onthefly.lab.routing.load_routed")

    # The hot path reads submodules and buffers through the ``_modules`` / ``_buffers`` dicts: each
    # nn.Module.__getattr__ costs ~1-3 us on a loaded 2-core CPU, comparable to a small matmul. The dicts are
    # what __getattr__ reads, so nothing can go stale.
    def _parts(self) -> tuple[list[nn.Module], "CentroidRouter"]:
        modules = self._modules
        return list(modules["experts"]._modules.values()), modules["router"]  # type: ignore[union-attr]

    def _generalist_and_embedding(self, x: torch.Tensor, direct: bool, scores: bool = False
                                  ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(generalist's output, embedding or, with ``scores``, the router's (centroids, batch) scores, whether
        that output is ours to write into); ``direct``: what ``_direct_calls()`` said for this call."""
        experts, router = self._parts()
        generalist = experts[0]
        hook_module, hook_input = self.hook_module, self.hook_input
        if direct and _plain_sequential(generalist) and hook_module in generalist._modules:
            # What nn.Sequential.forward does, child by child, keeping the embedding on the way: no hook to
            # register and remove per call (a fixed cost that dominates at small batches). With ``scores``, the
            # router reads the input before the first layer and the embedding where it is made, while each is
            # still in cache (reading them again after the whole forward cost ~8% of the generalist at 8192
            # rows). When the last layer is an nn.Linear the output is a tensor this call made, so the
            # specialists' rows may be written into it.
            found = router._input_part(x) if scores else None
            h, embedding = x, None
            for name, module in generalist._modules.items():  # as Sequential.forward: repeats kept, in order
                if hook_input and name == hook_module:
                    embedding = h
                    found = router._add_embedding_part(found, h) if scores else None
                h = module(h) if _has_hooks(module) else module.forward(h)
                if not hook_input and name == hook_module:
                    embedding = h
                    found = router._add_embedding_part(found, h) if scores else None
            # F.linear always returns a fresh tensor; another last layer might return a view or a buffer
            return h, found if scores else embedding, type(module) is nn.Linear  # module: the last child
        captured: list[torch.Tensor] = []
        layer = generalist.get_submodule(hook_module)
        if hook_input:
            handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        else:
            handle = layer.register_forward_hook(lambda _m, _args, out: captured.append(out))
        try:
            out = generalist(x)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"layer {hook_module!r} did not run in the generalist's forward")
        # the user's forward (or a hook of theirs) may keep its output: not ours to write into
        return out, router._scores_t(x, captured[-1]) if scores else captured[-1], False

    def _members(self, scores: torch.Tensor, router: "CentroidRouter",
                 experts: int) -> list[tuple[int, torch.Tensor]]:
        """(expert, indices of its samples in the batch) for each specialist that has samples, from the
        router's (centroids, batch) scores; a sample goes to the expert of its nearest centroid, the first one
        on an exact tie.

        When every specialist owns a single centroid (the lab's regions are one cluster each) and there are
        few, each takes the samples whose nearest centroid it is: with one specialist and a large batch,
        ``s_c < min(s_j, j < c)`` and ``s_c <= min(s_j, j > c)`` (value-only minima vectorise; the index
        minimum does not: 55 vs 20 us at 8192 rows), otherwise one index minimum then one comparison and one
        ``nonzero`` per specialist. Else the batch is split once: centroid -> expert, a stable sort by expert,
        and each expert's run of the sorted order. On CPU ``numel()`` is a plain read and ``tolist()`` of the
        counts a small copy; on CUDA ``nonzero`` and the counts each wait for the device.
        """
        cluster_expert = router._buffers["cluster_expert"]
        single = self._single_centroids(cluster_expert, experts)
        if single is not None:
            if len(single) == 1 and scores.shape[1] >= VALUE_MIN_FROM:
                k, c = single[0]
                own = scores[c]
                mask = own < (scores[0] if c == 1 else scores[:c].amin(0)) if c > 0 else None
                if c + 1 < scores.shape[0]:
                    rest = own <= (scores[c + 1] if c + 2 == scores.shape[0] else scores[c + 1:].amin(0))
                    mask = rest if mask is None else mask.logical_and_(rest)
                found = [(k, mask.nonzero().squeeze(1))] if mask is not None else \
                    [(k, torch.arange(scores.shape[1], device=scores.device))]  # one centroid: all its own
            else:
                cluster = torch.min(scores, dim=0).indices
                found = [(k, (cluster == c).nonzero().squeeze(1)) for k, c in single]
            return [(k, members) for k, members in found if members.numel()]
        # torch.min over dim 0 of the (centroids, batch) scores: measured 2.5x faster on CPU than argmin(1) of
        # a contiguous transposed copy and 15x faster than argmin(0).
        route = cluster_expert.index_select(0, torch.min(scores, dim=0).indices)
        order = torch.sort(route, stable=True).indices
        counts = torch.bincount(route, minlength=experts).tolist()
        at, out = counts[0], []
        for k in range(1, experts):
            if counts[k]:
                out.append((k, order[at:at + counts[k]]))
            at += counts[k]
        return out

    def _single_centroids(self, cluster_expert: torch.Tensor, experts: int) -> list[tuple[int, int]] | None:
        """[(expert, its one centroid)] when each specialist owns exactly one and there are fewer than
        SORT_SPLIT_FROM; None otherwise. Cached until ``cluster_expert`` changes (``load_state_dict`` writes it
        in place, which bumps its version; ``.to()`` replaces it)."""
        ce = cluster_expert
        if self._owned_source is not ce or self._owned_version != ce._version:
            routes = ce.tolist()
            owned = [[c for c, e in enumerate(routes) if e == k] for k in range(1, experts)]
            single = all(len(c) == 1 for c in owned) and len(owned) < SORT_SPLIT_FROM
            self._single = [(k + 1, c[0]) for k, c in enumerate(owned)] if single else None
            self._owned_source, self._owned_version = ce, ce._version
        return self._single

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """The expert index each sample goes to (0: the generalist)."""
        _, embedding, _ = self._generalist_and_embedding(x, _direct_calls())
        return self._modules["router"](x, embedding)  # type: ignore[misc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        direct = _direct_calls()
        experts, router = self._parts()
        if self.dense or torch.compiler.is_exporting():
            base, embedding, _ = self._generalist_and_embedding(x, direct)
            route = router(x, embedding)
            outs = torch.stack([base] + [expert(x) for expert in experts[1:]])  # (experts, B, ...)
            index = route.reshape(1, -1, *([1] * (base.dim() - 1))).expand(1, *base.shape)
            return outs.gather(0, index).squeeze(0)
        out, scores, owned = self._generalist_and_embedding(x, direct, scores=True)
        for k, members in self._members(scores, router, len(experts)):
            expert, rows = experts[k], x.index_select(0, members)
            if direct and _plain_sequential(expert):
                for module in expert._modules.values():
                    rows = module(rows) if _has_hooks(module) else module.forward(rows)
                answer = rows
            else:
                answer = expert(rows)
            answer = answer if answer.dtype == out.dtype else answer.to(out.dtype)
            # in place on a tensor this call made; out of place on one the generalist's own forward returned
            out = out.index_copy_(0, members, answer) if owned else out.index_copy(0, members, answer)
            owned = True
        return out


# Specialists; below this, an index minimum + one comparison and nonzero each beats one stable sort + bincount:
# measured 29 vs 32 us at 540 rows and 126 vs 176 us at 8192 rows with 4 (the lab's most regions), one thread.
SORT_SPLIT_FROM = 5
VALUE_MIN_FROM = 2048  # rows; from here the value-minimum split of one specialist beats an index minimum (measured)


def _direct_calls() -> bool:
    """True when calling a module without hooks of its own would do nothing but call its ``forward``
    (``nn.Module._call_impl``'s own shortcut): no global module hooks, no TorchScript tracing, not under
    ``torch.compile`` or ``torch.export`` (which then see the ordinary calls)."""
    return not (_module_hooks._global_forward_hooks or _module_hooks._global_forward_pre_hooks
                or _module_hooks._global_backward_hooks or _module_hooks._global_backward_pre_hooks
                or torch._C._get_tracing_state() or torch.compiler.is_compiling())


def _has_hooks(module: nn.Module) -> bool:
    """Hooks of its own, or compiled: then ``module(x)`` is more than ``module.forward(x)`` even when
    ``_direct_calls()``; otherwise calling ``forward`` skips ``nn.Module.__call__``'s bookkeeping (about 1-2 us
    per module on CPU, most of a small model's time at small batches)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or module._compiled_call_impl is not None)


def _plain_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` (or a subclass keeping its forward) that calling would simply run."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward \
        and not _has_hooks(module)


# -- building ---------------------------------------------------------------------------------------------
def embedding_hook(model: nn.Module, layer: str | None) -> tuple[str, bool]:
    """(module name, hook its input?) for ``layer`` as ``onthefly.lab.scoring`` reads it.

    ``None`` is the input of the last ``nn.Linear``; a name is that module's output; ``"input of NAME"`` (how a
    ScoreTable records the default) is NAME's input.
    """
    modules = dict(model.named_modules())
    if layer is None:
        linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
        if not linears:
            raise InvalidArgument(f"{type(model).__name__} has no nn.Linear; name the layer whose output is the "
                                  "embedding the regions were found with")
        return linears[-1], True
    hook_input = layer.startswith("input of ")
    name = layer[len("input of "):] if hook_input else layer
    if name not in modules:
        raise InvalidArgument(f"no layer named {name!r} in {type(model).__name__}; layers are: "
                              f"{', '.join(n for n in modules if n)[:300]}")
    return name, hook_input


def router_from_space(space: Any, centroids: np.ndarray, cluster_expert: np.ndarray) -> CentroidRouter:
    """A router from a fitted ``onthefly.lab.features.FeatureSpace`` (blocks ``(a - mean) @ components.T /
    scale``), k-means centroids in that space, and the expert of each centroid."""
    centroids = np.asarray(centroids, dtype=np.float64)
    bias = (centroids ** 2).sum(axis=1)
    weights = {"input": np.zeros((len(centroids), 0)), "embedding": np.zeros((len(centroids), 0))}
    means = {"input": np.zeros(0), "embedding": np.zeros(0)}
    at = 0
    for block in space.blocks:
        components = np.asarray(block.components, dtype=np.float64)
        p = components.shape[0]
        # -2 f.c_k with f = (a - mean) @ components.T / scale  ->  (a - mean) @ w
        w = (-2.0 * components.T @ centroids[:, at:at + p].T / float(block.scale)).T
        weights[block.name] = w
        mean = np.asarray(block.mean, dtype=np.float64).reshape(-1)
        if np.linalg.norm(mean) <= FOLD_MEAN_RATIO * float(block.scale):
            bias = bias - w @ mean  # a @ w - mean @ w: float32's error grows by at most ~1 + the ratio
        else:
            means[block.name] = mean  # far from zero: centre first, or float32 would cancel large numbers
        at += p
    if at != centroids.shape[1]:
        raise InvalidArgument(f"centroids have {centroids.shape[1]} dimensions but the feature space has {at}")
    return CentroidRouter(torch.as_tensor(means["input"]), torch.as_tensor(weights["input"]),
                          torch.as_tensor(means["embedding"]), torch.as_tensor(weights["embedding"]),
                          torch.as_tensor(bias), torch.as_tensor(np.asarray(cluster_expert, dtype=np.int64)))


def router_from_regions(regions: Any) -> CentroidRouter:
    """The router of an ``onthefly.lab.regions.RegionSet``: region ``r`` (its position) -> expert ``r + 1``,
    every other cluster -> expert 0. Routes exactly as ``RegionSet.assign`` does, plus one."""
    cluster_expert = np.zeros(int(regions.k), dtype=np.int64)
    for position, region in enumerate(regions.regions):
        cluster_expert[int(region.cluster)] = position + 1
    return router_from_space(regions.space, regions.centroids, cluster_expert)


def build_routed(generalist: nn.Module, specialists: Sequence[nn.Module], regions: Any, *,
                 layer: str | None = None, factory: Callable[[], nn.Module] | None = None,
                 dense: bool = False) -> RoutedModel:
    """A RoutedModel holding copies of the generalist and specialists (the originals stay untouched).

    ``regions`` is the ``RegionSet`` the specialists were forked for (specialist ``r`` for its region at
    position ``r``), or a ready ``CentroidRouter``. ``layer`` is the embedding layer the regions were found
    with, as the ScoreTable records it (default: the RegionSet's, else the input of the last nn.Linear).
    """
    if isinstance(regions, CentroidRouter):
        router = regions
    else:
        if len(specialists) != len(regions.regions):
            raise InvalidArgument(f"{len(specialists)} specialist(s) for {len(regions.regions)} region(s): give one "
                                  "specialist per region, in the RegionSet's order")
        router = router_from_regions(regions)
        layer = layer if layer is not None else getattr(regions, "layer", None)
    hook_module, hook_input = embedding_hook(generalist, layer)
    experts = [clone_model(m, factory).eval() for m in [generalist, *specialists]]
    return RoutedModel(experts, router, hook_module=hook_module, hook_input=hook_input, dense=dense).eval()


# -- saving and loading -----------------------------------------------------------------------------------
EXTRA_STATE = "_extra_state"  # the state-dict key of RoutedModel.get_extra_state()


def _check_structure(state: Any) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InvalidArgument(f"not a routed-model checkpoint (expected format {FORMAT!r}); save one with "
                              "onthefly.lab.routing.save_routed or torch.save(routed.state_dict(), f)")
    if state.get("version") != VERSION:
        raise InvalidArgument(f"routed-model checkpoint version {state.get('version')!r} is not supported "
                              f"(this OnTheFly reads version {VERSION})")


def routed_checkpoint(model: RoutedModel) -> dict[str, Any]:
    """What ``save_routed`` writes: the state dict (tensors + the plain structure fields of
    ``get_extra_state``), on CPU; all of it loads with ``weights_only=True``."""
    return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in model.state_dict().items()}


def save_routed(model: RoutedModel, f: str | os.PathLike | BinaryIO) -> None:
    """Same as ``torch.save(model.state_dict(), f)`` with the tensors moved to CPU."""
    torch.save(routed_checkpoint(model), f)


def load_routed(source: str | os.PathLike | BinaryIO | bytes | dict, factory: Callable[[], nn.Module], *,
                map_location: str | torch.device = "cpu") -> RoutedModel:
    """Rebuild a saved RoutedModel: ``torch.load(weights_only=True)``, then ``factory()`` once per expert.

    ``source`` is a file, its bytes, or a state dict already loaded; ``factory`` builds the user's model (the
    generalist's architecture) with no arguments.
    """
    if isinstance(source, dict):
        state = source
    else:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        state = torch.load(source, map_location=map_location, weights_only=True)
    structure = state.get(EXTRA_STATE) if isinstance(state, dict) else None
    _check_structure(structure)
    experts = []
    for _ in range(int(structure["experts"])):
        expert = factory()
        if not isinstance(expert, nn.Module):
            raise InvalidArgument(f"the model factory returned {type(expert).__name__}, not an nn.Module")
        experts.append(expert)
    router = CentroidRouter.shaped_like(state, "router.")
    model = RoutedModel(experts, router, hook_module=str(structure["hook_module"]),
                        hook_input=bool(structure["hook_input"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InvalidArgument("the factory builds a model whose weights do not match the saved experts; pass the "
                              f"factory of the model that was forked ({str(exc).splitlines()[0]})") from None
    return model.to(map_location).eval()


# -- inference cost -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InferenceCost:
    """Cost per sample of the routed model and of one model, and their ratios (routed / single)."""

    flops_per_sample: float
    single_flops_per_sample: float
    flops_ratio: float
    seconds_per_sample: float
    single_seconds_per_sample: float
    time_ratio: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x`` as ``torch.utils.flop_counter`` counts them (matmuls, convs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


MAX_ROUNDS = 2000  # inference_cost's cap on timed rounds when min_seconds asks for more than `repeats`


def inference_cost(routed: nn.Module, single: nn.Module, x: torch.Tensor, *, repeats: int = 20,
                   warmup: int = 3, min_seconds: float = 0.2) -> InferenceCost:
    """Count FLOPs on ``x`` and time forward passes of both models, interleaved, in the same process and
    thread settings, so that both sides see the same machine.

    ``warmup`` passes of each are untimed (first calls pay for allocations and cold caches). Each round then
    times one pass of each, the order alternating round by round so that neither side always runs on the
    caches the other left; there are at least ``repeats`` rounds, more until ``min_seconds`` have passed (at
    most MAX_ROUNDS). Time is the fastest pass of each side: on a shared machine the slower ones measure the
    neighbours (on a loaded 2-core CPU, per-seed medians at batch 8192 ranged from 2.6x to 31x; minima were
    2.4-2.7x in four seeds of five). Too few rounds bias the ratio against the slower side, whose longer
    passes are less likely to run undisturbed: at 8192 rows under load, 30 rounds gave 1.75x where 150 gave
    1.51x for the same routed model. At large batches on CPU, glibc's
    malloc may hand a pass's large temporaries back to the kernel and fault them in again on the next pass
    (hundreds of page faults per pass for an 8192-row MLP, up to twice its compute), for one side or the
    other depending on the heap's layout: the ratio is then bimodal run to run. This function leaves the
    allocator alone (it runs inside the user's process); ``benchmarks/bench_lab_routing.py`` pins it.
    FLOPs (``torch.utils.flop_counter``) do not depend on the machine at all.
    """
    if repeats < 1:
        raise InvalidArgument(f"repeats must be >= 1, got {repeats}")
    if warmup < 0 or min_seconds < 0:
        raise InvalidArgument(f"warmup and min_seconds must be >= 0, got {warmup} and {min_seconds}")
    n = max(int(x.shape[0]), 1)
    modes = (routed.training, single.training)
    routed.eval(), single.eval()
    try:
        flops, single_flops = count_flops(routed, x), count_flops(single, x)
        times: tuple[list[float], list[float]] = ([], [])
        with torch.no_grad():
            for _ in range(warmup):
                routed(x), single(x)
            sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # time the work, not the launch
            deadline, r = time.perf_counter() + min_seconds, 0
            while r < repeats or (r < MAX_ROUNDS and time.perf_counter() < deadline):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    model = routed if i == 0 else single
                    sync()
                    start = time.perf_counter()
                    model(x)
                    sync()
                    times[i].append(time.perf_counter() - start)
                r += 1
    finally:
        routed.train(modes[0]), single.train(modes[1])
    t, t1 = min(times[0]) / n, min(times[1]) / n
    return InferenceCost(flops / n, single_flops / n, flops / max(single_flops, 1), t, t1,
                         t / t1 if t1 > 0 else float("nan"))
