"""Directive: what every rank must do at one global step, as rank 0 decided it; and the horizon.

Rank 0 alone receives commands. It applies them itself and sends the peers the *effect*, not the
command: stop or not, paused or not, the step budget left (``step N``), and the hyperparameter values
that changed. So any command (built in or added by a feature) that changes those lands identically
on every rank, and commands that only read or write files (checkpoint, export, test now) run on rank 0
alone while the peers wait at the same step. A checkpoint or export there is the one exception: it
sends a *collect* directive (``collect`` > 0), on which every peer adds its part (its RNG states, and
its shard of a sharded model) to rank 0's checkpoint at that step; it changes no state.

Messages are JSON (never pickle: a peer must not execute what the store hands it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from onthefly.runtime import hyperparams
from onthefly.runtime.events import RunState

Groups = list[tuple[int, dict[str, float]]]


@dataclass(frozen=True)
class Directive:
    """The shared state every rank takes at step ``at``."""

    at: int
    stop: bool
    paused: bool
    pending_steps: int
    changes: Groups = field(default_factory=list)
    collect: int = 0  # > 0: not a change of state but rank 0's checkpoint number n, to add this rank's part to


@dataclass(frozen=True)
class Message:
    """One store message: an optional directive, then the horizon (peers may run freely below it)."""

    horizon: int
    directive: Directive | None = None
    end: bool = False

    def encode(self) -> bytes:
        body: dict[str, Any] = {"h": self.horizon}
        if self.end:
            body["end"] = True
        d = self.directive
        if d is not None:
            body["d"] = {"at": d.at, "stop": d.stop, "paused": d.paused, "steps": d.pending_steps,
                         "hp": [[g, values] for g, values in d.changes]}
            if d.collect:
                body["d"]["c"] = d.collect
        return json.dumps(body, separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> "Message":
        body = json.loads(raw)
        d = body.get("d")
        directive = None
        if d is not None:
            changes = [(int(g), {str(k): float(v) for k, v in values.items()}) for g, values in d["hp"]]
            directive = Directive(int(d["at"]), bool(d["stop"]), bool(d["paused"]), int(d["steps"]), changes,
                                  int(d.get("c", 0)))
        return Message(int(body["h"]), directive, bool(body.get("end", False)))


def snapshot(ctx: Any) -> tuple:
    """What a directive carries, read from rank 0's loop: compare two to see whether anything changed."""
    control = ctx.run.control
    groups = hyperparams.read_groups(ctx.optimizer) if ctx.optimizer is not None else []
    return control.stop_requested, control.state is RunState.PAUSED, control.pending_steps, groups


def changed_values(before: Groups, after: Groups) -> Groups:
    """Per param group, the numeric keys whose value differs between two ``read_groups`` snapshots."""
    old = dict(before)
    out = []
    for group, values in after:
        diff = {k: v for k, v in values.items() if old.get(group, {}).get(k) != v}
        if diff:
            out.append((group, diff))
    return out


def follow(ctx: Any, directive: Directive) -> None:
    """Take rank 0's decision on this rank (training thread, at step ``directive.at``)."""
    control = ctx.run.control
    for group, values in directive.changes:
        hyperparams.apply(ctx.optimizer, values, [group], ctx.scheduler)
    control.pending_steps = directive.pending_steps
    control.stop_requested = control.stop_requested or directive.stop
    if directive.paused and not directive.stop:
        control.enter_pause(ctx, "paused by rank 0")
    else:
        control.leave_pause(ctx, "resumed by rank 0")
