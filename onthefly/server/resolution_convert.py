"""ResolutionService conversions, proto <-> domain, in one place (the only lab part-2 module that imports pb2)."""

from __future__ import annotations

import json
import math
from typing import Any

from onthefly.lab.compare import Comparison as DomainTable
from onthefly.lab.resolutions import DESCRIPTIONS
from onthefly.v1 import lab_resolutions_pb2 as pb


def resolution_table(table: DomainTable, routed: set[str]) -> pb.ResolutionTable:
    out = pb.ResolutionTable(split=table.split, worst_kinds=list(table.worst_kinds))
    out.slices.extend(pb.SliceColumn(name=s.name, kind=s.kind, size=s.size) for s in table.slices)
    for r in table.rows:
        out.rows.append(pb.ResolutionRow(
            name=r.name, description=DESCRIPTIONS.get(r.name, r.name),
            accuracy=[r.accuracy[s.name] for s in table.slices], overall=r.overall, worst_slice=r.worst_slice,
            worst_accuracy=r.worst_accuracy, flops_ratio=r.flops_ratio, time_ratio=_finite(r.time_ratio),
            sample_gradients=r.sample_gradients, forward_samples=r.forward_samples, state_hash=r.state_hash,
            routed=r.name in routed))
    out.best.update(table.best)
    return out


def comparison(result: Any, routed: set[str]) -> pb.Comparison:
    out = pb.Comparison(step=result.step, extra=result.extra, validation=resolution_table(result.validation, routed),
                        regions_state_hash=result.regions_hash)
    if result.test is not None:
        out.test.CopyFrom(resolution_table(result.test, routed))
    out.skipped.update(result.skipped)
    out.blocked.update(result.blocked)
    return out


def recommendation(chosen: Any) -> pb.RecommendResponse:
    out = pb.RecommendResponse(resolution=chosen.name, reason=chosen.reason, split=chosen.split,
                               worst_accuracy=chosen.worst_accuracy, overall=chosen.overall)
    out.excluded.update(chosen.excluded)
    return out


def lineage(graph: Any, training: list[str]) -> pb.LineageResponse:
    out = pb.LineageResponse(dot=graph.to_dot(), training=training)
    for node in graph.nodes():
        out.nodes.append(pb.LineageNode(id=node.id, kind=node.kind, parents=list(node.parents), step=node.step,
                                        state_hash=node.state_hash, budget=node.budget or 0, spent=node.spent,
                                        data={k: json.dumps(v) for k, v in node.data.items()}))
    out.edges.extend(pb.LineageEdge(parent=a, child=b) for a, b in graph.edges())
    return out


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
