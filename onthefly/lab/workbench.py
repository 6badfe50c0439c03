"""The live run's part 2: fork, compare, recommend, apply and lineage, bound to the run's ``Lab``.

    bench = workbench_of(lab)                     # one per run, created on first use
    bench.fork(["r1"], budget=2000)               # specialists (a command at the next step boundary)
    table = bench.compare()                       # the menu at matched compute, per slice, on val (and test)
    choice = bench.recommend()                    # chosen on validation, with a one-sentence reason
    bench.apply(choice.name, confirm=True)        # a command with a receipt, recorded in the session

Where work runs: forks and comparisons are commands applied on the training thread at a step boundary.
By default the work happens right there, so the generalist waits (it is paused for that long) and its
numbers are untouched afterwards (RNGs are forked and restored). A fork with ``background=True`` only
copies the generalist and its optimizer at the boundary, and the specialists train on a worker thread
while the generalist keeps going; models that draw random numbers while training are refused in that
mode (torch's RNG is shared by every thread). A comparison always runs at the boundary: its merges,
scoring passes and evaluations seed the global RNGs (and give them back), which on another thread would
race the run's own draws. Nothing here ever runs inside a servicer, and nothing
changes the generalist's weights except ``apply`` with ``confirm=True``.

Compute is limited: ``allowed`` sample-gradients for everything the lab trains in this run (default: the Lab's
``allowance``, 10 times the run's planned sample-gradients, or its ``allowance_samples``; unlimited when the run's
size is unknown). A fork or a comparison asking for more is refused (``BudgetExceeded``, naming how to give more)
before anything is copied; a fork or comparison request may set a new allowance first (``allowance=N``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.lab.compare import Comparison, compare, evaluation_slices
from onthefly.lab.fork import ForkSpec, Specialist, fork_specialists, has_stochastic_modules, record_generalist, \
    start_fork
from onthefly.lab.lineage import Lineage
from onthefly.lab.recommend import Recommendation, recommend
from onthefly.lab.resolutions import MENU, ForkPoint, Menu, Resolution, run_menu
from onthefly.lab.rng import kept_rng
from onthefly.lab.scoring import state_dict_hash
from onthefly.lab.train_steps import DataSource, clone_model, clone_optimizer, loader_base_indices
from onthefly.runtime.commands import Command, ReceiptStatus
from onthefly.runtime.errors import CommandRejected, FailedPrecondition, InvalidArgument, NotFound
from onthefly.trainer.forward import split_batch

if TYPE_CHECKING:
    from onthefly.lab.lab import Lab
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.control import Control

EXTRAS_KEY = "lab-resolutions"
ALLOWANCE_HINT = ("raise the allowance: --allowance N here (N sample-gradients in all), or Lab(allowance=X) / "
                  "Trainer(lab_allowance=X) in the script (X times the run's planned sample-gradients)")
COMMAND_TIMEOUT = 3600.0


@dataclass(frozen=True)
class ForkResult:
    """What a fork command did: the specialists' ids, or (background) that they are training."""

    step: int
    ids: tuple[str, ...]
    background: bool


@dataclass(frozen=True)
class CompareResult:
    """One comparison: the menu's resolutions scored on validation (and test when the run has one)."""

    step: int
    extra: int
    validation: Comparison
    test: Comparison | None
    skipped: dict[str, str]
    blocked: dict[str, str]
    regions_step: int | None
    regions_hash: str


@dataclass(frozen=True)
class Applied:
    """An applied resolution: what was installed, when, and where it is recorded."""

    name: str
    step: int
    state_hash: str
    replaced_hash: str
    kind: str  # "weights" (the generalist's weights and optimizer state swapped) or "routed" (saved, installed)
    record: str  # the session file that records it ("" without a session)
    message: str


@dataclass
class _Comparison:
    menu: Menu
    result: CompareResult
    recommendation: Recommendation | None = None


class Workbench:
    """Part 2 of the lab for one run (see the module docstring)."""

    def __init__(self, lab: "Lab", allowed: int | None = None) -> None:
        self.lab = lab
        self.lineage = Lineage()
        self.specialists: dict[str, Specialist] = {}
        self.pending: dict[str, concurrent.futures.Future] = {}
        self.failed: dict[str, str] = {}
        self.applied: list[Applied] = []
        self.routed: Any = None  # the routed model installed by apply, if any
        self._comparison: _Comparison | None = None
        self._lock = threading.RLock()
        self.ledger = Ledger(allowed if allowed is not None else _default_allowance(lab), "lab")

    def set_allowance(self, allowed: int) -> None:
        """Let the lab spend ``allowed`` sample-gradients in all in this run (what it spent counts against it)."""
        self.ledger.set_limit(allowed)

    # -- reading ---------------------------------------------------------------------------------
    def comparison(self) -> CompareResult:
        with self._lock:
            if self._comparison is None:
                raise FailedPrecondition("no comparison yet; run one first (`onthefly lab compare`)")
            return self._comparison.result

    def resolution(self, name: str) -> Resolution:
        with self._lock:
            if self._comparison is None:
                raise FailedPrecondition("no comparison yet; run `onthefly lab compare` before applying")
            return self._comparison.menu.get(name)

    def specialist(self, specialist_id: str) -> Specialist:
        self._collect()
        with self._lock:
            found = self.specialists.get(specialist_id)
            if found is None and specialist_id in self.pending:
                raise FailedPrecondition(f"specialist {specialist_id} is still training")
        if found is None:
            raise NotFound(f"no specialist {specialist_id!r}; see `onthefly lab lineage`")
        return found

    def _collect(self) -> None:
        """Move finished background forks into ``specialists``; a failed one is kept in ``failed`` with why."""
        with self._lock:
            for key, future in list(self.pending.items()):
                if future.done():
                    del self.pending[key]
                    if future.exception() is None:
                        for s in future.result():
                            self.specialists[s.id] = s
                    else:
                        self.failed[key] = f"{type(future.exception()).__name__}: {future.exception()}"

    def training(self) -> list[str]:
        """Background forks still training, then failed ones as 'KEY failed: why'."""
        self._collect()
        with self._lock:
            return sorted(self.pending) + [f"{k} failed: {why}" for k, why in sorted(self.failed.items())]

    # -- commands ----------------------------------------------------------------------------------
    def _submit(self, command: Command, timeout: float | None) -> Any:
        control = self.lab.ctx.run.control
        if self.lab.on_training_thread() and not control.finished:  # a hook: this thread is the boundary
            command.check(control)
            return command.apply(self.lab.ctx)
        pending = control.submit(command)
        receipt = pending.wait(timeout)
        if receipt.status is ReceiptStatus.REJECTED:
            raise FailedPrecondition(f"'{command.name}' was rejected: {receipt.reason}")
        if receipt.status is not ReceiptStatus.APPLIED:
            raise FailedPrecondition(f"'{command.name}' is queued (command #{receipt.command_id}) but did not run "
                                     f"within {timeout}s; is the run stuck in a long step?")
        return pending.result

    def fork_command(self, region_ids: Sequence[str], budget: int, *, replay_fraction: float = 0.2,
                     patience: int | None = None, background: bool = False, seed: int = 0,
                     checkpoint_id: str = "", allowance: int | None = None) -> "ForkCommand":
        return ForkCommand(self, tuple(region_ids), budget, replay_fraction, patience, background, seed,
                           checkpoint_id, allowance)

    def fork(self, region_ids: Sequence[str], budget: int, *, replay_fraction: float = 0.2,
             patience: int | None = None, background: bool = False, seed: int = 0, checkpoint_id: str = "",
             timeout: float | None = COMMAND_TIMEOUT) -> ForkResult:
        """Fork one specialist per region, each with ``budget`` sample-gradients (at the next step boundary).

        ``checkpoint_id`` forks from a checkpoint of the run's session instead of the weights now (later,
        from the session): the live generalist is not read at all then."""
        return self._submit(self.fork_command(region_ids, budget, replay_fraction=replay_fraction,
                                              patience=patience, background=background, seed=seed,
                                              checkpoint_id=checkpoint_id), timeout)

    def compare_command(self, extra: int | None = None, names: Sequence[str] = MENU, *,
                        seed: int = 0, allowance: int | None = None) -> "CompareCommand":
        return CompareCommand(self, extra, tuple(names), seed, allowance)

    def compare(self, extra: int | None = None, names: Sequence[str] = MENU, *, seed: int = 0,
                timeout: float | None = COMMAND_TIMEOUT) -> CompareResult:
        """Build the menu at ``extra`` sample-gradients each from the generalist now, compare on val (+test)."""
        return self._submit(self.compare_command(extra, names, seed=seed), timeout)

    def recommend(self) -> Recommendation:
        """The resolution to apply, chosen on the validation split of the latest comparison."""
        with self._lock:
            if self._comparison is None:
                raise FailedPrecondition("no comparison yet; run `onthefly lab compare` first")
            held = self._comparison
        if held.recommendation is None:
            held.recommendation = recommend(held.result.validation, blocked=held.result.blocked,
                                            label_noise=bool(held.menu.noisy_regions))
        return held.recommendation

    def apply_command(self, name: str, *, confirm: bool) -> "ApplyResolution":
        return ApplyResolution(self, name, confirm)

    def apply(self, name: str, *, confirm: bool = False, timeout: float | None = COMMAND_TIMEOUT) -> Applied:
        """Install resolution ``name`` in the live run (only with ``confirm=True``), at a step boundary."""
        return self._submit(self.apply_command(name, confirm=confirm), timeout)

    # -- work (training thread, or the worker on copies) ------------------------------------------
    def _fork_now(self, ctx: "LoopContext", cmd: "ForkCommand") -> ForkResult:
        regions = self.lab.regions()
        data = DataSource.from_loader(ctx.train_loader)
        train = loader_base_indices(ctx.train_loader)
        specs = []
        for region_id in cmd.region_ids:
            region = regions.region(region_id)
            specs.append(ForkSpec(region_id, np.intersect1d(region.indices, train), int(cmd.budget),
                                  cmd.replay_fraction, cmd.patience))
        model, optimizer, step = ctx.model, ctx.optimizer, ctx.step
        if cmd.checkpoint is not None:  # the generalist as the session saved it, on copies
            state = cmd.checkpoint.state()
            model = clone_model(ctx.model)
            model.load_state_dict(state["model"])
            optimizer = clone_optimizer(ctx.optimizer, ctx.model, model)
            optimizer.load_state_dict(state["optimizer"])
            step = cmd.checkpoint.info.step
        parent = record_generalist(self.lineage, model, step, f"generalist@{step}")
        kwargs = dict(train_indices=train, seed=cmd.seed, loss_fn=ctx.loss_fn, ledger=self.ledger,
                      lineage=self.lineage, step=step, parent=parent, id_prefix=f"s@{step}:")
        if cmd.background:
            future = start_fork(model, optimizer, data, specs, **kwargs)
            key = f"fork@{step}:{','.join(cmd.region_ids)}:{time.monotonic_ns()}"
            with self._lock:
                self.pending[key] = future
            return ForkResult(step, (), True)
        made = fork_specialists(model, optimizer, data, specs, **kwargs)
        with self._lock:
            for s in made:
                self.specialists[s.id] = s
        return ForkResult(step, tuple(s.id for s in made), False)

    def _compare_now(self, ctx: "LoopContext", cmd: "CompareCommand") -> Any:
        lab = self.lab
        regions = lab.regions()
        table = lab.table("train")
        data = DataSource.from_loader(ctx.train_loader)
        train = loader_base_indices(ctx.train_loader)
        extra = cmd.extra if cmd.extra is not None else _default_extra(ctx, len(train))
        val = _split_arrays(ctx.val_loader, "val")
        test = _split_arrays(ctx.test_loader, "test") if ctx.test_loader is not None else None
        # Everything the menu spends, checked against what the lab may still spend, before any copy.
        _require(self, _menu_cost(extra, cmd.names), "this comparison trains",
                 "a smaller --extra or fewer --resolutions")
        point = ForkPoint(ctx.model, ctx.optimizer, data, train, table, regions, loss_fn=ctx.loss_fn, step=ctx.step,
                          seed=cmd.seed, noisy_regions=_noisy(lab, regions))
        return self._finish_compare(point, extra, cmd, val, test, table.step)

    def _finish_compare(self, point: ForkPoint, extra: int, cmd: "CompareCommand", val: tuple, test: tuple | None,
                        regions_step: int | None) -> CompareResult:
        menu = run_menu(point, extra, cmd.names, lineage=self.lineage)
        spent = sum(r.spent.sample_gradients for r in menu.resolutions) - _shared_spend(menu)
        self.ledger.charge(spent, "compare")
        acted = [r.id for r in point.acted_regions()]
        x_val, y_val = val
        from onthefly.lab.scoring import embed

        layer = _module_layer(point.table.layer)
        slices = evaluation_slices(point.regions, _flat(x_val), embedding=embed(point.model, x_val, layer=layer), y=y_val,
                                   n_classes=_classes(point), region_ids=acted)
        on_val = compare(menu.resolutions, x_val, y_val, slices, reference=point.model, split="val", cost_repeats=3)
        on_test = None
        if test is not None:
            x_test, y_test = test
            test_slices = evaluation_slices(point.regions, _flat(x_test), embedding=embed(point.model, x_test, layer=layer),
                                            y=y_test, n_classes=_classes(point), region_ids=acted)
            on_test = compare(menu.resolutions, x_test, y_test, test_slices, reference=point.model, split="test")
        result = CompareResult(point.step, extra, on_val, on_test, dict(menu.skipped), dict(menu.blocked),
                               regions_step, point.regions.state_hash)
        with self._lock:
            self._comparison = _Comparison(menu, result)
        return result

    def _apply_now(self, ctx: "LoopContext", cmd: "ApplyResolution") -> Applied:
        resolution = self.resolution(cmd.resolution)
        replaced = state_dict_hash(ctx.model)
        if resolution.routed:
            from onthefly.lab.routing import routed_checkpoint

            self.routed = resolution.model
            record = self._record(ctx, resolution, replaced, "routed", routed_checkpoint(resolution.model))
            message = (f"installed the routed model {resolution.name} ({resolution.state_hash[:12]}) as this run's "
                       f"result{' (' + record + ')' if record else ''}; the generalist keeps training as it was")
            kind = "routed"
        else:
            try:
                ctx.model.load_state_dict(resolution.model.state_dict())
            except RuntimeError as exc:
                raise CommandRejected(f"resolution {cmd.resolution}'s weights do not fit the live model: "
                                      f"{str(exc).splitlines()[0]}") from None
            if resolution.optimizer is not None:
                # A copy: load_state_dict keeps tensors that already fit (same device and dtype), so the live
                # optimizer's in-place updates would otherwise run on the resolution's own state.
                ctx.optimizer.load_state_dict(copy.deepcopy(resolution.optimizer.state_dict()))
            record = self._record(ctx, resolution, replaced, "weights", None)
            built = self.comparison().step
            message = (f"swapped in {resolution.name}'s weights ({resolution.state_hash[:12]}) "
                       f"{'and optimizer state ' if resolution.optimizer is not None else ''}at step {ctx.step}"
                       + (f" (built from the generalist of step {built}; the {ctx.step - built} step(s) since are "
                          "replaced)" if ctx.step != built else ""))
            kind = "weights"
        applied = Applied(cmd.resolution, ctx.step, resolution.state_hash, replaced, kind, record, message)
        node = f"applied:{cmd.resolution}@{ctx.step}"
        if resolution.lineage_id in self.lineage:
            self.lineage.add(node, "applied", (resolution.lineage_id,), step=ctx.step, state_hash=resolution.state_hash,
                             data={"replaced": replaced, "kind": kind}, replace=True)
        with self._lock:
            self.applied.append(applied)
        return applied

    def _record(self, ctx: "LoopContext", resolution: Resolution, replaced: str, kind: str,
                checkpoint: dict | None) -> str:
        """Write the applied resolution into the session (travels in exports with the history)."""
        from onthefly.sessions import sessions_of

        sessions = sessions_of(ctx.run)
        session = sessions.session if sessions is not None else None
        if session is None:
            return ""
        number = len(self.applied) + 1
        prefix = f"history/{session.session_id}/lab-resolutions/applied-{number:03d}"
        doc = {"resolution": resolution.name, "description": resolution.description, "kind": kind,
               "step": ctx.step, "state_hash": resolution.state_hash, "replaced_state_hash": replaced,
               "sample_gradients": resolution.spent.sample_gradients, "lineage": resolution.lineage_id,
               "time": time.time()}
        if checkpoint is not None:
            with session.folder.writer(f"{prefix}.pt") as f:
                torch.save(checkpoint, f)
            doc["routed_model"] = f"{prefix}.pt"
        session.folder.write_json(f"{prefix}.json", doc)
        return f"{prefix}.json"


class ForkCommand(Command):
    name = "lab-fork"

    def __init__(self, bench: Workbench, region_ids: tuple[str, ...], budget: int, replay_fraction: float,
                 patience: int | None, background: bool, seed: int, checkpoint_id: str = "",
                 allowance: int | None = None) -> None:
        self.allowance = _check_allowance(allowance)
        if not region_ids:
            raise InvalidArgument("name the region(s) to fork on (see `onthefly lab regions`)")
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise InvalidArgument(f"the budget must be a positive number of sample-gradients, got {budget!r}")
        if not 0.0 <= replay_fraction < 1.0:
            raise InvalidArgument(f"the replay fraction must be in [0, 1), got {replay_fraction}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, (int, np.integer))
                                     or patience < 1):
            raise InvalidArgument(f"patience must be a whole number of passes >= 1 (or unset), got {patience!r}")
        self.bench, self.region_ids, self.budget = bench, region_ids, int(budget)
        self.replay_fraction, self.patience, self.background, self.seed = replay_fraction, patience, background, seed
        self.checkpoint_id = checkpoint_id
        self.checkpoint: Any = None

    def check(self, control: "Control") -> None:
        if self.checkpoint_id and self.checkpoint is None:  # read and verify it here, not on the training thread
            from onthefly.sessions import sessions_of

            sessions = sessions_of(self.bench.lab.ctx.run)
            if sessions is None:
                raise FailedPrecondition("this run has no session to fork a checkpoint from")
            session = sessions.require_session()
            self.checkpoint = session.load_checkpoint(self.checkpoint_id)  # NotFound lists the checkpoints
        regions = self.bench.lab.regions()
        for region_id in self.region_ids:
            regions.region(region_id)  # NotFound naming the regions that exist
        ctx = self.bench.lab.ctx
        DataSource.from_loader(ctx.train_loader)
        if self.allowance is not None:
            self.bench.set_allowance(self.allowance)
        _require(self.bench, self.budget * len(self.region_ids), "this fork asks for", "a smaller --budget")
        if self.background and has_stochastic_modules(ctx.model):
            raise FailedPrecondition("this model uses dropout, whose random numbers come from torch's RNG shared "
                                     "with the run: fork with the run paused (without --background)")

    def apply(self, ctx: "LoopContext") -> ForkResult:
        try:
            # the user's dataset augments as the copies are made and trained; each module keeps its own mode
            with kept_rng(), kept_modes(ctx.model):
                return self.bench._fork_now(ctx, self)
        except (NotFound, BudgetExceeded, InvalidArgument, FailedPrecondition) as exc:
            raise CommandRejected(str(exc)) from None

    def describe(self, result: ForkResult) -> str:
        source = f" of checkpoint {self.checkpoint_id}" if self.checkpoint_id else ""
        if result.background:
            return f"forking {', '.join(self.region_ids)} from step {result.step}{source} on a worker thread"
        return f"forked {', '.join(result.ids)} from step {result.step}{source}"


class CompareCommand(Command):
    name = "lab-compare"

    def __init__(self, bench: Workbench, extra: int | None, names: tuple[str, ...], seed: int,
                 allowance: int | None = None) -> None:
        self.allowance = _check_allowance(allowance)
        if extra is not None and (isinstance(extra, bool) or not isinstance(extra, (int, np.integer)) or extra < 1):
            raise InvalidArgument(f"the extra compute must be a positive number of sample-gradients, got {extra!r}")
        unknown = [n for n in names if n not in MENU]
        if unknown or not names:
            raise InvalidArgument(f"unknown resolution(s) {unknown}; the menu is: {', '.join(MENU)}")
        self.bench, self.extra, self.names, self.seed = bench, extra, names, seed

    def check(self, control: "Control") -> None:
        lab = self.bench.lab
        lab.regions()
        lab.table("train")
        ctx = lab.ctx
        if ctx.val_loader is None:
            raise FailedPrecondition("recommending needs a validation split the training never sees: pass "
                                     "val_loader= to fit()")
        if self.allowance is not None:
            self.bench.set_allowance(self.allowance)
        if self.extra is not None:
            _require(self.bench, _menu_cost(self.extra, self.names), "this comparison trains",
                     "a smaller --extra or fewer --resolutions")

    def apply(self, ctx: "LoopContext") -> Any:
        try:
            # val/test are read through the user's dataset (and its augmentations) here; the merges and the cost
            # measurement switch the live model to eval and back with model.train(flag), which would unfreeze
            # a submodule the user keeps in eval (a frozen BatchNorm)
            with kept_rng(), kept_modes(ctx.model):
                return self.bench._compare_now(ctx, self)
        except (NotFound, BudgetExceeded, InvalidArgument, FailedPrecondition) as exc:
            raise CommandRejected(str(exc)) from None

    def describe(self, result: Any) -> str:
        return f"compared {len(result.validation.rows)} resolutions at {result.extra} sample-gradients each"


class ApplyResolution(Command):
    name = "lab-apply"

    def __init__(self, bench: Workbench, resolution: str, confirm: bool) -> None:
        self.bench, self.resolution, self.confirm = bench, resolution, confirm

    def check(self, control: "Control") -> None:
        if not self.confirm:
            raise FailedPrecondition(f"applying {self.resolution} changes the live run; confirm it (--yes, "
                                     "confirm=True) after reading `onthefly lab compare`")
        self.bench.resolution(self.resolution)

    def apply(self, ctx: "LoopContext") -> Applied:
        if ctx.run.control.finished:
            raise CommandRejected("the run has finished; there is no live run to apply a resolution to")
        try:
            return self.bench._apply_now(ctx, self)
        except (NotFound, FailedPrecondition) as exc:
            raise CommandRejected(str(exc)) from None

    def describe(self, result: Applied) -> str:
        return result.message


# -- helpers ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def kept_modes(model: torch.nn.Module) -> Iterator[None]:
    """Every submodule's own train/eval flag as it was before the block."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


_CREATING = threading.Lock()  # one Workbench per run, whichever RPC threads ask for it first


def workbench_of(lab: "Lab", allowed: int | None = None) -> Workbench:
    """The run's Workbench, created on first use (kept in the loop context's feature state). Safe to call
    concurrently: every caller gets the same one."""
    ctx = lab.ctx
    bench = ctx.extras.get(EXTRAS_KEY)
    if bench is None:
        with _CREATING:
            bench = ctx.extras.get(EXTRAS_KEY)
            if bench is None:
                bench = ctx.extras[EXTRAS_KEY] = Workbench(lab, allowed)
    return bench


def _default_allowance(lab: "Lab") -> int | None:
    """The Lab's allowance_samples, or its allowance times the run's own planned sample-gradients (None: no
    limit, when the allowance is infinite or the run's size is unknown)."""
    if lab.allowance_samples is not None:
        return lab.allowance_samples
    ctx = lab.ctx
    steps = getattr(ctx.run, "total_steps", 0) or 0
    batch = getattr(ctx.train_loader, "batch_size", None)
    if not steps or not batch or math.isinf(lab.allowance):
        return None
    return max(1, int(lab.allowance * steps * batch))


def _default_extra(ctx: "LoopContext", n_train: int) -> int:
    """E = half the run's planned sample-gradients (PROTOCOL), or five epochs' worth when that is unknown."""
    steps = getattr(ctx.run, "total_steps", 0) or 0
    batch = getattr(ctx.train_loader, "batch_size", None) or 1
    return max(1, int(0.5 * steps * batch)) if steps else 5 * n_train


def _check_allowance(allowance: int | None) -> int | None:
    if allowance is None:
        return None
    if isinstance(allowance, bool) or not isinstance(allowance, (int, np.integer)) or allowance < 1:
        raise InvalidArgument(f"the allowance must be a positive number of sample-gradients, got {allowance!r}")
    return int(allowance)


def _require(bench: Workbench, cost: int, what: str, smaller: str) -> None:
    """BudgetExceeded, saying how to fit, when ``cost`` more sample-gradients would pass the lab's allowance."""
    ledger = bench.ledger
    try:
        ledger.require(cost)
    except BudgetExceeded:
        raise BudgetExceeded(f"the lab may spend {ledger.remaining} more sample-gradient(s) in this run "
                             f"({ledger.spent}/{ledger.limit} spent) but {what} {cost}: pass {smaller}, or "
                             f"{ALLOWANCE_HINT}") from None


def _menu_cost(extra: int, names: Sequence[str]) -> int:
    """Sample-gradients a menu really trains: E per single-model resolution, the shared specialists once."""
    from onthefly.lab.resolutions import ADAPTERS, SINGLE_MODEL, SPECIALIST_SHARE

    singles = sum(1 for n in names if n in SINGLE_MODEL + (ADAPTERS,))
    forks = [n for n in names if n not in SINGLE_MODEL + (ADAPTERS,)]
    shared = int(extra * SPECIALIST_SHARE) if forks else 0
    return singles * extra + shared + len(forks) * (extra - shared)


def _shared_spend(menu: Menu) -> int:
    """The specialists' cost is charged to every fork variant's ledger but trained once."""
    variants = [r for r in menu.resolutions if r.details.get("uses_specialists")]
    once = sum(s.report.sample_gradients for s in menu.specialists)
    return max(0, len(variants) - 1) * once


def _noisy(lab: "Lab", regions: Any) -> frozenset[str]:
    """The regions the discovery's own noise verdicts flag: the ones the regions table shows. (Checking again
    here would use other features when the discovery left the inputs out, or a newer scoring pass, and could
    disagree with what the user read; it would also repeat a cross-validated check on the training thread.)"""
    return frozenset(region_id for region_id, verdict in lab.verdicts(regions).items() if verdict.noisy)


def _split_arrays(loader: Any, split: str) -> tuple[torch.Tensor, np.ndarray]:
    """All inputs and labels of a split as two arrays (read through its dataset and collate, not its sampler)."""
    if loader is None:
        raise FailedPrecondition(f"this run has no {split}_loader")
    data = DataSource.from_loader(loader)
    indices = loader_base_indices(loader)
    inputs, target = split_batch(data.batch(indices))
    if isinstance(inputs, tuple) and len(inputs) == 1:
        inputs = inputs[0]
    if not isinstance(inputs, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise FailedPrecondition(f"comparing needs {split} batches of (tensor inputs, tensor labels)")
    return inputs, target.reshape(-1).cpu().numpy()


def _module_layer(layer: str) -> str | None:
    """ScoreTable.layer as scoring.embed takes it: None for the default (the input of the last nn.Linear)."""
    return None if layer.startswith("input of ") else layer


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(x.shape[0], -1).float().cpu().numpy()


def _classes(point: ForkPoint) -> int:
    return int(point.table.probs.shape[1])
