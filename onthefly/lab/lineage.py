"""Lineage: where every model the lab made came from (parent, fork step, weights hash, data, compute).

A graph of nodes: the generalist at a fork point, each specialist forked from it, each resolution or merge
built from those. Edges run from parent to child. Safe to call from several threads (specialists may
finish on worker threads).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from onthefly.runtime.errors import InvalidArgument, NotFound

KINDS = ("generalist", "specialist", "resolution", "merge", "applied")


@dataclass(frozen=True)
class LineageNode:
    """One model: ``parents`` name the nodes it was made from; ``data`` says what it trained on."""

    id: str
    kind: str
    parents: tuple[str, ...]
    step: int  # the generalist's step at the fork (or at which the resolution was applied)
    state_hash: str
    data: dict[str, Any] = field(default_factory=dict)  # region id, sizes, replay fraction, indices hash
    budget: int | None = None  # sample-gradients allowed
    spent: int = 0  # sample-gradients charged
    created_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "parents": list(self.parents), "step": self.step,
                "state_hash": self.state_hash, "data": dict(self.data), "budget": self.budget,
                "spent": self.spent, "created_at": self.created_at}


class Lineage:
    """The lab's model graph for one run."""

    def __init__(self) -> None:
        self._nodes: dict[str, LineageNode] = {}
        self._lock = threading.Lock()

    def add(self, id: str, kind: str, parents: tuple[str, ...] | list[str] = (), *, step: int, state_hash: str,
            data: dict[str, Any] | None = None, budget: int | None = None, spent: int = 0,
            replace: bool = False) -> LineageNode:
        """Record a node; its parents must already be recorded. ``replace`` updates a node with the same id
        (a generalist re-recorded at the same fork)."""
        if kind not in KINDS:
            raise InvalidArgument(f"lineage kind must be one of {KINDS}, got {kind!r}")
        node = LineageNode(id, kind, tuple(parents), int(step), state_hash, dict(data or {}), budget, int(spent),
                           time.time())
        with self._lock:
            missing = [p for p in node.parents if p not in self._nodes]
            if missing:
                raise NotFound(f"lineage parent(s) {missing} are not recorded; record the parent first")
            if id in self._nodes and not replace:
                raise InvalidArgument(f"a lineage node '{id}' already exists")
            self._nodes[id] = node
        return node

    def get(self, id: str) -> LineageNode:
        with self._lock:
            node = self._nodes.get(id)
        if node is None:
            raise NotFound(f"no model '{id}' in the lineage; list them with `onthefly lab lineage`")
        return node

    def __contains__(self, id: str) -> bool:
        with self._lock:
            return id in self._nodes

    def nodes(self) -> list[LineageNode]:
        with self._lock:
            return sorted(self._nodes.values(), key=lambda n: n.created_at)

    def edges(self) -> list[tuple[str, str]]:
        return [(p, n.id) for n in self.nodes() for p in n.parents]

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": [n.as_dict() for n in self.nodes()], "edges": [list(e) for e in self.edges()]}

    def to_dot(self) -> str:
        """The graph in Graphviz DOT, for people: one box per model, labelled with kind, step and compute."""
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for n in self.nodes():
            label = f"{n.id}\\n{n.kind} @ step {n.step}\\n{n.spent} sample-grads\\n{n.state_hash[:10]}"
            lines.append(f'  "{n.id}" [shape=box, label="{label}"];')
        lines += [f'  "{a}" -> "{b}";' for a, b in self.edges()]
        lines.append("}")
        return "\n".join(lines)
