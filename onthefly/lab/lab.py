"""Lab: the lab of one live run - its per-sample history, loss sketches, score tables, regions and slices.

    lab = Lab(layer="2")                      # optional: Trainer(..., hooks=[lab]); a served run gets one anyway
    trainer.fit(...)
    lab.score()                               # scoring pass at the next step boundary (a command, with a receipt)
    regions = lab.discover(k=8)               # error regions of the latest train score table
    lab.history.trajectory(17)                # every loss of base index 17

Where work runs: the history and sketches are fed on the bus's pump thread (never the training thread);
a scoring pass is a command applied on the training thread at a step boundary (the model is the
training model, so the table carries the hash of the exact weights scored; RNGs and module modes are
restored, so training continues bit-identically); region discovery (k-means) runs on the lab's own
worker thread, never on the training thread or inside a servicer. Everything else reads what is
recorded and is safe from any thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from onthefly.lab.history import PART_ROWS, SampleHistory
from onthefly.lab.sketches import LossSketches
from onthefly.runtime.commands import Command, ReceiptStatus
from onthefly.runtime.errors import CommandRejected, FailedPrecondition, InvalidArgument, NotFound
from onthefly.runtime.hooks import RunHook

if TYPE_CHECKING:
    from onthefly.lab.regions import RegionSet
    from onthefly.lab.scoring import ScoreTable
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control
    from onthefly.runtime.run import Run

log = logging.getLogger("onthefly")

SPLITS = ("train", "val", "test")
# Inputs are kept beside a score table (for input-space regions) only when this small: beyond it,
# regions use the embedding alone (say so in the discovery).
MAX_INPUT_FEATURES = 4096
MAX_INPUT_VALUES = 50_000_000
DISCOVER_TIMEOUT = 600.0
TREND_EPOCHS = 5
# By default the lab may train at most this many times the run's own planned sample-gradients (a full menu
# costs about 3x: E = half the run for each of ~6 trained resolutions).
ALLOWANCE = 10.0
_HISTORY_COLUMNS = ("region", "loss_history")  # slice columns that need no score table


@dataclass(frozen=True)
class Scored:
    """A score table with the inputs it saw (flattened, float32) when small enough to keep."""

    table: "ScoreTable"
    inputs: np.ndarray | None
    seconds: float


@dataclass(frozen=True)
class ScoreResult:
    """What one scoring pass produced: a table per split, at ``step``."""

    step: int
    tables: dict[str, Scored]


@dataclass(frozen=True)
class Slice:
    """A named set of base indices of one split (a region, a selection, or an imported slice)."""

    name: str
    split: str
    indices: np.ndarray
    source: str  # "region r1 of discovery 2", "selection ...", "imported"


class Lab(RunHook):
    """The lab bound to one run. Pass it in ``Trainer(hooks=[Lab(...)])`` to configure it; a run with a server
    gets a default one when the server starts (``lab_of(run)`` finds it).

    ``layer``: the module whose output is the embedding (default: the input of the last ``nn.Linear``).
    ``part_rows``: rows of per-sample history buffered per Parquet part. ``score_batch_size``: batch size of
    scoring passes (default: the split's DataLoader batch size). ``allowance``: the lab may train (forks and
    comparisons together) at most this many times the run's own planned sample-gradients (``math.inf``: no
    limit); ``allowance_samples``: that limit as a number of sample-gradients instead (needed when the run's
    size is unknown, e.g. an iterable DataLoader). Past it, a fork or comparison is refused before it starts.
    """

    def __init__(self, *, layer: str | None = None, part_rows: int = PART_ROWS,
                 score_batch_size: int | None = None, allowance: float = ALLOWANCE,
                 allowance_samples: int | None = None) -> None:
        if score_batch_size is not None and score_batch_size < 1:
            raise InvalidArgument(f"score_batch_size must be >= 1, got {score_batch_size}")
        if isinstance(allowance, bool) or not isinstance(allowance, (int, float)) or not allowance > 0:
            raise InvalidArgument(f"allowance is a positive multiple of the run's planned sample-gradients (10 by "
                                  f"default, math.inf for no limit), got {allowance!r}")
        if allowance_samples is not None and (isinstance(allowance_samples, bool)
                                              or not isinstance(allowance_samples, int) or allowance_samples < 1):
            raise InvalidArgument(f"allowance_samples is a positive whole number of sample-gradients, got "
                                  f"{allowance_samples!r}")
        self.allowance = float(allowance)
        self.allowance_samples = allowance_samples
        self.layer = layer
        self.part_rows = part_rows
        self.score_batch_size = score_batch_size
        self.sketches = LossSketches()
        self.history = SampleHistory(None)
        self.run: "Run | None" = None
        self._ctx: "LoopContext | None" = None
        self._lock = threading.RLock()
        self._scored: dict[str, Scored] = {}
        self._region_sets: list["RegionSet"] = []
        self._slices: dict[str, Slice] = {}
        self._descriptions: dict[int, dict[str, Any]] = {}  # id(RegionSet) -> region id -> text
        self._verdicts: dict[int, dict[str, Any]] = {}  # id(RegionSet) -> region id -> noise.RegionVerdict
        self._steps: dict[int, int] = {}  # id(RegionSet) -> training step of the scoring pass it came from
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="onthefly-lab")
        self._loop_thread: int | None = None  # the training thread (hooks run on it)

    # -- binding ---------------------------------------------------------------------------------
    def on_fit_start(self, ctx: "LoopContext") -> None:
        self._loop_thread = threading.get_ident()
        self.bind(ctx)

    def bind(self, ctx: "LoopContext") -> None:
        """Attach to the run of ``ctx``: history in its session folder, both fed by its bus. Idempotent."""
        if self._ctx is ctx:
            return
        if self._ctx is not None:  # a new fit with the same Lab: what it recorded belongs to the old run
            self.history.close()
            self.history = SampleHistory(None)
            self.sketches = LossSketches()
            with self._lock:
                self._scored.clear()
                self._region_sets.clear()
                self._descriptions.clear()
                self._verdicts.clear()
                self._steps.clear()
        first = self.run is None or self.run is not ctx.run
        self._ctx, self.run = ctx, ctx.run
        self._attach_history()
        if first:
            ctx.run.bus.observe(self._observe)

    def _observe(self, events: list) -> None:
        """Bus observer (the pump thread): feed the history and the sketches."""
        self.history.observe(events)
        self.sketches.observe(events)

    def _attach_history(self) -> None:
        """Keep the history in the run's session folder once the run has one (Lightning opens it after the
        server starts, at the start of training)."""
        from onthefly.sessions import sessions_of

        if self.history.enabled or self.run is None:
            return
        sessions = sessions_of(self.run)
        session = sessions.session if sessions is not None else None
        if session is not None:
            self.history = SampleHistory(session.folder, session.session_id, part_rows=self.part_rows)
            session.history_writers.append(self.history)

    def on_epoch_start(self, ctx: "LoopContext") -> None:
        self._loop_thread = threading.get_ident()  # a Lab added once fit has started (a served run's) learns it here
        self._attach_history()

    def on_training_thread(self) -> bool:
        """True when called from the run's training thread (a hook): a command queued there would wait for
        the very thread that waits for it, so the lab's blocking calls apply it at once instead."""
        return self._loop_thread is not None and self._loop_thread == threading.get_ident()

    def on_fit_end(self, ctx: "LoopContext", error: BaseException | None) -> None:
        # The run's end waits for no disk write: the last rows go to the writer (queries read them from memory
        # meanwhile; an export waits for them; the process writes them before it exits).
        ctx.run.bus.drain()
        try:
            self.history.flush(wait=False)
            self.history.retire()
        except Exception as exc:  # the run's own end must not fail on the lab's history
            log.warning("onthefly: the lab's sample history could not be flushed: %s", exc)

    def sync(self) -> None:
        """Every loss published so far in the history and sketches (drains the bus, then writes)."""
        if self.run is not None:
            self.run.bus.drain()
        self.history.flush()

    @property
    def ctx(self) -> "LoopContext":
        if self._ctx is None:
            raise FailedPrecondition("the lab is not bound to a run yet; try again once fit() is running")
        return self._ctx

    # -- scoring (a command on the training thread) ----------------------------------------------
    def score_command(self, splits: tuple[str, ...] = ("train",), *, layer: str | None = None,
                      seed: int = 0) -> "ScorePass":
        return ScorePass(self, splits, layer if layer is not None else self.layer, seed)

    def score(self, splits: tuple[str, ...] = ("train",), *, layer: str | None = None, seed: int = 0,
              timeout: float | None = None) -> ScoreResult:
        """Score every sample of ``splits`` now (at the next step boundary while fit runs; at once after it)."""
        command = self.score_command(splits, layer=layer, seed=seed)
        ctx = self.ctx
        control = ctx.run.control
        if control.finished or self.on_training_thread():  # fit is over, or a hook calls: score it here
            command.check(control)
            return command.apply(ctx)
        pending = control.submit(command)
        receipt = pending.wait(timeout)
        if receipt.status is ReceiptStatus.REJECTED:
            raise FailedPrecondition(f"the scoring pass was rejected: {receipt.reason}")
        if receipt.status is not ReceiptStatus.APPLIED:
            raise FailedPrecondition(f"the scoring pass is queued (command #{receipt.command_id}) but did not run "
                                     f"within {timeout}s; is the run stuck in a long step?")
        return pending.result

    def _store_scores(self, result: ScoreResult) -> None:
        with self._lock:
            self._scored.update(result.tables)

    def scored(self, split: str = "train") -> Scored:
        """The latest scoring pass of ``split``; FailedPrecondition when none ran yet."""
        _check_split(split)
        with self._lock:
            found = self._scored.get(split)
        if found is None:
            raise FailedPrecondition(f"no {split} scoring pass yet; run one first (`onthefly lab score`)")
        return found

    def table(self, split: str = "train") -> "ScoreTable":
        return self.scored(split).table

    def sample_command(self, index: int, split: str = "train") -> "ReadSample":
        return ReadSample(self, index, split)

    # -- regions (on the lab's worker thread) ----------------------------------------------------
    def discover(self, *, k: int | None = 8, ratio: float | None = None, max_regions: int = 4, seed: int = 0,
                 use_inputs: bool = True, use_embedding: bool = True,
                 timeout: float = DISCOVER_TIMEOUT) -> "RegionSet":
        """Error regions of the latest train score table (k-means over all samples; see lab.regions; ``ratio``
        defaults to regions.DEFAULT_RATIO), each described and given a noise-or-regime verdict (lab.noise)."""
        from onthefly.lab.describe import describe_region
        from onthefly.lab.noise import region_verdicts
        from onthefly.lab.regions import DEFAULT_RATIO, discover_regions

        ratio = DEFAULT_RATIO if ratio is None else ratio

        scored = self.scored("train")
        x = scored.inputs if use_inputs else None
        if x is None and not use_embedding:
            raise InvalidArgument("regions need a feature space: keep the inputs or the embedding (or both); the "
                                  "inputs of this table were " + ("not kept (too large)" if use_inputs else "left out"))

        def work() -> "RegionSet":
            regions = discover_regions(scored.table, x, k=k, ratio=ratio, max_regions=max_regions, seed=seed,
                                       use_embedding=use_embedding)
            # Described and checked for label noise here too (the trend reads the history; confident learning
            # cross-validates a classifier): never on an RPC thread.
            verdicts = {v.region_id: v for v in region_verdicts(scored.table, regions, x=x, seed=seed)} \
                if regions.regions else {}
            described = {r.id: describe_region(scored.table, regions, r.id, x=scored.inputs,
                                               trend=_trend(self, r.indices), verdict=verdicts.get(r.id))
                         for r in regions.regions}
            with self._lock:
                self._region_sets.append(regions)
                self._descriptions[id(regions)] = described
                self._verdicts[id(regions)] = verdicts
                self._steps[id(regions)] = int(scored.table.step or 0)
                for old in self._region_sets[:-8]:  # the latest few: a slice keeps its own indices anyway
                    self._descriptions.pop(id(old), None)
                    self._verdicts.pop(id(old), None)
                    self._steps.pop(id(old), None)
                del self._region_sets[:-8]
            return regions

        future = self._worker.submit(work)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # the work goes on and is kept when done
            raise FailedPrecondition(
                f"the discovery (k-means over {len(scored.table)} samples) is still running after {timeout:g}s; "
                "it is kept when it finishes: list it with `onthefly lab regions --latest`, or wait longer "
                "(--timeout)") from None

    def regions(self) -> "RegionSet":
        """The latest discovery; FailedPrecondition when none ran yet."""
        with self._lock:
            if not self._region_sets:
                raise FailedPrecondition("no regions discovered yet; score the train split, then discover "
                                         "(`onthefly lab regions`)")
            return self._region_sets[-1]

    def region(self, region_id: str):
        return self.regions().region(region_id)

    def describe(self, region_id: str):
        """What a person reads about one region of the latest discovery."""
        regions = self.regions()
        regions.region(region_id)  # NotFound naming the regions that exist
        with self._lock:
            return self._descriptions[id(regions)][region_id]

    def discovery_step(self, regions: "RegionSet") -> int:
        """The training step of the scoring pass ``regions`` were discovered in."""
        with self._lock:
            return self._steps.get(id(regions), 0)

    def verdicts(self, regions: "RegionSet | None" = None) -> dict[str, Any]:
        """Region id -> noise.RegionVerdict of a discovery this lab made (default the latest), computed once
        at discovery: whether a region is "likely label noise - do not upweight" or a regime, with evidence."""
        regions = self.regions() if regions is None else regions
        with self._lock:
            found = self._verdicts.get(id(regions))
        if found is None:
            raise NotFound("these regions were not discovered by this lab (or are no longer kept); discover again")
        return dict(found)

    # -- slices ----------------------------------------------------------------------------------
    def slice_of(self, name: str) -> Slice:
        """A named slice, or the region of that id in the latest discovery."""
        with self._lock:
            found = self._slices.get(name)
        if found is not None:
            return found
        with self._lock:
            has_regions = bool(self._region_sets)
        if has_regions:
            try:
                regions = self.regions()
                region = regions.region(name)
                return Slice(name, regions.split, region.indices.copy(), f"region {name}")
            except NotFound:
                pass
        with self._lock:
            names = sorted(self._slices)
        region_ids = [r.id for r in self.regions().regions] if has_regions else []
        raise NotFound(f"no slice or region named {name!r} (slices: {', '.join(names) or 'none'}; regions: "
                       f"{', '.join(region_ids) or 'none discovered'})")

    def add_slice(self, name: str, split: str, indices: Any, source: str) -> Slice:
        if not name or not isinstance(name, str):
            raise InvalidArgument("a slice needs a non-empty name")
        _check_split(split)
        values = np.asarray(indices, dtype=np.int64).reshape(-1)
        if (values < 0).any():
            raise InvalidArgument(f"a slice holds base indices >= 0; got {int(values[values < 0][0])}")
        entry = Slice(name, split, np.unique(values), source)
        with self._lock:
            self._slices[name] = entry
        return entry

    def slices(self) -> list[Slice]:
        with self._lock:
            return list(self._slices.values())

    def sync_bus(self) -> None:
        """Move every event published so far into the sketches and history buffers (no disk write)."""
        if self.run is not None:
            self.run.bus.drain()

    # -- selections: rules that make a named slice ----------------------------------------------
    def _source(self, split: str, what: str) -> str:
        table = self.table(split)
        return f"{what} of the {split} scoring pass at step {table.step} (weights {table.state_hash[:12]})"

    def select_loss_band(self, name: str, split: str, low_quantile: float, high_quantile: float) -> Slice:
        """Samples whose scored loss lies between the two quantiles of the split's scored losses."""
        from onthefly.lab import selections

        members = selections.loss_band(self.table(split), low_quantile, high_quantile)
        return self.add_slice(name, split, members,
                              self._source(split, f"loss quantiles {low_quantile:g}-{high_quantile:g}"))

    def select_class_errors(self, name: str, split: str, label: int) -> Slice:
        """The misclassified samples of one label in the split's latest scoring pass."""
        from onthefly.lab import selections

        members = selections.class_errors(self.table(split), label)
        return self.add_slice(name, split, members, self._source(split, f"errors on label {label}"))

    def per_class_error(self, split: str = "train") -> list:
        """Every label's samples, errors, error rate and mean loss in the split's latest scoring pass."""
        from onthefly.lab import selections

        return selections.per_class_error(self.table(split))

    def select_forgotten(self, name: str, threshold: float | None = None) -> Slice:
        """Train samples learned in one epoch and no longer learned in a later one (selections.forgotten over
        the history's per-epoch losses; learned: under ``threshold``, default each epoch's median loss)."""
        from onthefly.lab import selections

        self.sync_bus()
        indices, epochs, losses = self.history.epoch_losses("train")
        members, _ = selections.forgotten(indices, epochs, losses, threshold)
        rule = "median loss per epoch" if threshold is None else f"loss < {threshold:g}"
        first, last = (int(epochs[0]), int(epochs[-1])) if len(epochs) else (0, 0)
        return self.add_slice(name, "train", members, f"forgotten over epochs {first}-{last} (learned: {rule})")

    def select_region(self, name: str, region_id: str) -> Slice:
        regions = self.regions()
        region = regions.region(region_id)
        return self.add_slice(name, regions.split, region.indices,
                              f"region {region_id} (k={regions.k}, seed {regions.seed}, weights "
                              f"{regions.state_hash[:12]})")

    # -- export and import (bytes; the caller writes the file) -----------------------------------
    def slice_table(self, name: str, columns: tuple[str, ...] | None = None):
        """The slice as a pyarrow Table: base index, split and the chosen columns (slices.COLUMNS)."""
        from onthefly.lab import slices

        chosen = tuple(columns) if columns else slices.DEFAULT_COLUMNS
        found = self.slice_of(name)
        scores = [c for c in chosen if c in slices.COLUMNS and c not in _HISTORY_COLUMNS]
        table = self.table(found.split) if scores else None  # FailedPrecondition: score first
        with self._lock:
            regions = self._region_sets[-1] if self._region_sets else None
        history = self._loss_histories(found.indices, found.split) if "loss_history" in chosen else None
        return slices.slice_table(found.indices, found.split, table=table, regions=regions, loss_history=history,
                                  columns=chosen)

    def _loss_histories(self, index: np.ndarray, split: str) -> list[list[float]]:
        """Each index's losses in ``split`` in step order (train: every step it was trained on; val/test: every
        evaluation), empty lists without a history. Base indices name samples of their own split's dataset."""
        if not self.history.enabled:
            return [[] for _ in index]
        self.sync_bus()
        table = self.history.table(split, indices=index)  # sorted by (index, step)
        rows = table.column("index").to_numpy()
        loss = table.column("loss").to_numpy()
        starts = np.searchsorted(rows, index)
        ends = np.searchsorted(rows, index, side="right")
        return [loss[a:b].tolist() for a, b in zip(starts, ends)]

    def export_slice(self, name: str, fmt: str, columns: tuple[str, ...] | None = None) -> tuple[int, bytes]:
        """(rows, the slice encoded as ``fmt``: parquet, csv or json); nothing is written to disk."""
        from onthefly.lab import slices

        if fmt not in slices.FORMATS:
            raise InvalidArgument(f"unknown slice format {fmt!r}; choose from {', '.join(slices.FORMATS)}")
        table = self.slice_table(name, columns)
        return table.num_rows, slices.encode(table, fmt)

    def import_slice(self, name: str, fmt: str, data: bytes, split: str | None = None) -> Slice:
        """Keep the base indices of an encoded slice (an ``index`` column) as slice ``name``."""
        from onthefly.lab import slices

        split, indices = slices.read_indices(data, fmt, split)
        return self.add_slice(name, split, indices, f"imported ({fmt}, {len(indices)} rows)")

def _trend(lab: Lab, indices: np.ndarray):
    """The members' mean train loss per epoch over the last ``TREND_EPOCHS`` epochs recorded (the recent
    direction, and a read bounded by those epochs' parts on a long run), as a describe.Trend."""
    from onthefly.lab.describe import Trend, member_trend

    if not lab.history.enabled:
        return Trend((), (), float("nan"), "unknown")
    starts = lab.history.epoch_first_steps()
    first = starts[sorted(starts)[-TREND_EPOCHS:][0]] if starts else None
    table = lab.history.table("train", indices=indices, first_step=first)
    epoch = table.column("epoch").to_numpy()
    loss = table.column("loss").to_numpy().astype(np.float64)
    epochs = np.unique(epoch)
    return member_trend(epochs.tolist(), [float(loss[epoch == e].mean()) for e in epochs])

class ScorePass(Command):
    """Score every sample of the named splits with the training model, at a step boundary."""

    name = "lab-score"

    def __init__(self, lab: Lab, splits: tuple[str, ...], layer: str | None, seed: int) -> None:
        splits = tuple(dict.fromkeys(splits or ("train",)))
        for split in splits:
            _check_split(split)
        self.lab, self.splits, self.layer, self.seed = lab, splits, layer, int(seed)

    def check(self, control: "Control") -> None:
        from onthefly.lab.scoring import _embedding_layer

        ctx = self.lab.ctx
        for split in self.splits:
            loader = getattr(ctx, f"{split}_loader", None)
            if loader is None:
                raise FailedPrecondition(f"this run has no {split}_loader to score; pass {split}_loader= to fit()")
            if getattr(loader, "dataset", None) is None:
                raise FailedPrecondition(f"the {split}_loader has no .dataset to score sample by sample")
        _embedding_layer(ctx.model, self.layer)  # InvalidArgument naming the layers when it does not exist

    def apply(self, ctx: "LoopContext") -> ScoreResult:
        _import_discovery_libraries()
        tables = {}
        for split in self.splits:
            loader = getattr(ctx, f"{split}_loader", None)
            if loader is None:
                raise CommandRejected(f"this run has no {split}_loader to score")
            tables[split] = _score_split(self.lab, ctx, loader, split, self.layer, self.seed)
        result = ScoreResult(ctx.step, tables)
        self.lab._store_scores(result)
        return result

    def describe(self, result: ScoreResult) -> str:
        parts = [f"{split} {len(s.table)} samples (accuracy {s.table.accuracy:.3f})" for split, s in result.tables.items()]
        return f"scored {', '.join(parts)} at step {result.step}"


MAX_SAMPLE_VALUES = 1 << 22


@dataclass(frozen=True)
class SampleInput:
    """One sample's input (float32, its own shape) and label, read from the base dataset."""

    index: int
    split: str
    values: np.ndarray
    label: int | None
    image: bool


def _base_dataset(dataset: Any) -> Any:
    from torch.utils.data import Subset

    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


class ReadSample(Command):
    """Read one sample of a split's base dataset on the training thread (the loop's own thread reads the
    dataset, as it does when loading without workers; never an RPC thread)."""

    name = "lab-sample"

    def __init__(self, lab: Lab, index: int, split: str) -> None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise InvalidArgument(f"a sample index is a base-dataset index >= 0, got {index!r}")
        self.lab, self.index, self.split = lab, int(index), _check_split(split)

    def _dataset(self, ctx: "LoopContext") -> Any:
        loader = getattr(ctx, f"{self.split}_loader", None)
        if loader is None or getattr(loader, "dataset", None) is None:
            raise FailedPrecondition(f"this run has no {self.split}_loader with a dataset to read samples from")
        base = _base_dataset(loader.dataset)
        try:
            size = len(base)
        except TypeError:
            raise FailedPrecondition(f"the {self.split} dataset has no length; samples cannot be read by index") from None
        if self.index >= size:
            raise NotFound(f"no sample {self.index}: the {self.split} base dataset has {size} samples (0..{size - 1})")
        return base

    def check(self, control: "Control") -> None:
        self._dataset(self.lab.ctx)

    def apply(self, ctx: "LoopContext") -> SampleInput:
        import torch

        from onthefly.lab.rng import kept_rng

        with kept_rng():  # the user's augmentations draw here: the run's own draws must not move
            item = self._dataset(ctx)[self.index]
        x, label = (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) >= 2 else (item, None)
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            raise CommandRejected(f"sample {self.index}'s input is a {type(x).__name__}, not a tensor or array")
        values = (x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor)
                  else np.asarray(x, dtype=np.float32))
        if values.size > MAX_SAMPLE_VALUES:
            raise CommandRejected(f"sample {self.index}'s input has {values.size:,} values; at most "
                                  f"{MAX_SAMPLE_VALUES:,} are sent")
        try:
            label_value = None if label is None else int(label.item() if hasattr(label, "item") else label)
        except (TypeError, ValueError):
            label_value = None
        shape = values.shape
        image = (len(shape) == 2 or (len(shape) == 3 and (shape[0] in (1, 3, 4) or shape[2] in (1, 3, 4))))
        return SampleInput(self.index, self.split, values, label_value, bool(image) and min(shape) >= 1)

    def describe(self, result: SampleInput) -> str:
        return f"read {self.split} sample {result.index} {tuple(result.values.shape)}"


def _score_split(lab: Lab, ctx: "LoopContext", loader: Any, split: str, layer: str | None, seed: int) -> Scored:
    """One split's scoring pass, keeping the model's inputs (through a forward pre-hook on the root module,
    removed after) when they are small enough for input-space regions."""
    from onthefly.lab.scoring import score

    dataset = loader.dataset
    batch_size = lab.score_batch_size or getattr(loader, "batch_size", None) or 256
    inputs: list[np.ndarray] = []
    kept = {"values": 0, "keep": True}

    def keep(_module: Any, args: tuple) -> None:
        if not kept["keep"] or not args or not hasattr(args[0], "detach"):
            kept["keep"] = False
            return
        value = args[0].detach().reshape(args[0].shape[0], -1)
        kept["values"] += value.numel()
        if value.shape[1] > MAX_INPUT_FEATURES or kept["values"] > MAX_INPUT_VALUES:
            kept["keep"] = False
            inputs.clear()
            return
        inputs.append(value.float().cpu().numpy())

    started = time.perf_counter()
    handle = ctx.model.register_forward_pre_hook(keep)
    try:
        table = score(ctx.model, dataset, loss_fn=ctx.loss_fn, layer=layer, batch_size=int(batch_size),
                      collate_fn=getattr(loader, "collate_fn", None), seed=seed, device=ctx.device, split=split,
                      step=ctx.step)
    finally:
        handle.remove()
    x = np.concatenate(inputs) if kept["keep"] and inputs else None
    if x is not None and len(x) != len(table):
        x = None
    return Scored(table, x, time.perf_counter() - started)


def _import_discovery_libraries() -> None:
    """Import what region discovery uses here, on the training thread with every RNG given back. Discovery
    runs on the lab's worker thread while training goes on, and importing scikit-learn's clustering imports
    modules that draw from Python's global ``random`` (rich's style ids): done there, the first discovery
    would move the run's own draws. A discovery needs a scoring pass first, so this runs before it."""
    from onthefly.lab.rng import kept_rng

    with kept_rng():
        try:
            import cleanlab.filter  # noqa: F401
            import sklearn.cluster  # noqa: F401
        except ImportError:  # discovery says what is missing when it runs
            pass


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    return split


def lab_of(run: "Run") -> Lab | None:
    """The Lab attached to ``run`` (None when it has none)."""
    return next((h for h in run.hooks.hooks if isinstance(h, Lab)), None)


def attach_lab(run: "Run") -> Lab:
    """The run's Lab, created (and bound, once the loop has its context) when it has none yet."""
    lab = lab_of(run)
    if lab is None:
        lab = Lab()
        run.hooks.add(lab)
    ctx = run.control.ctx
    if ctx is not None:
        lab.bind(ctx)
    return lab

