"""Lab domain objects <-> onthefly.v1 lab messages (the one place that maps them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onthefly.runtime.errors import InvalidArgument
from onthefly.v1 import lab_pb2
from onthefly.v1.lab_pb2 import FeatureDifference as ProtoFeatureDifference
from onthefly.v1.lab_pb2 import RegionDescription as ProtoRegionDescription
from onthefly.v1.lab_pb2 import RegionSetSummary as ProtoRegionSetSummary
from onthefly.v1.lab_pb2 import RegionSummary as ProtoRegionSummary
from onthefly.v1.lab_pb2 import ScoreSummary as ProtoScoreSummary
from onthefly.v1.lab_pb2 import SliceSummary as ProtoSliceSummary
from onthefly.v1.lab_pb2 import TrajectorySeries as ProtoTrajectorySeries

_SPLITS = {lab_pb2.SAMPLE_SPLIT_TRAIN: "train", lab_pb2.SAMPLE_SPLIT_VAL: "val", lab_pb2.SAMPLE_SPLIT_TEST: "test"}
_SPLIT_VALUES = {name: value for value, name in _SPLITS.items()}
_SCOPES = {lab_pb2.LOSS_SCOPE_RUN: "run", lab_pb2.LOSS_SCOPE_EPOCH: "epoch", lab_pb2.LOSS_SCOPE_LATEST: "latest",
           lab_pb2.LOSS_SCOPE_EVAL: "eval"}
_FORMATS = {lab_pb2.SLICE_FORMAT_PARQUET: "parquet", lab_pb2.SLICE_FORMAT_CSV: "csv",
            lab_pb2.SLICE_FORMAT_JSON: "json"}


# -- requests -> domain -------------------------------------------------------------------------
def split(value: int, default: str = "train") -> str:
    if value == lab_pb2.SAMPLE_SPLIT_UNSPECIFIED:
        return default
    if value not in _SPLITS:
        raise InvalidArgument(f"unknown split {value}; use SAMPLE_SPLIT_TRAIN, SAMPLE_SPLIT_VAL or SAMPLE_SPLIT_TEST")
    return _SPLITS[value]


def splits(values: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(split(v) for v in values) if len(values) else default


def scope(value: int, default: str) -> str:
    if value == lab_pb2.LOSS_SCOPE_UNSPECIFIED:
        return default
    if value not in _SCOPES:
        raise InvalidArgument(f"unknown loss scope {value}; use RUN, EPOCH, LATEST or EVAL")
    return _SCOPES[value]


def slice_format(value: int) -> str:
    if value not in _FORMATS:
        raise InvalidArgument("choose a slice format: SLICE_FORMAT_PARQUET, SLICE_FORMAT_CSV or SLICE_FORMAT_JSON")
    return _FORMATS[value]


def optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


# -- domain -> responses ------------------------------------------------------------------------
def split_value(name: str) -> int:
    return _SPLIT_VALUES.get(name, lab_pb2.SAMPLE_SPLIT_UNSPECIFIED)


def score_summary(split_name: str, scored: Any) -> ProtoScoreSummary:
    table = scored.table
    return ProtoScoreSummary(
        split=split_value(split_name), samples=len(table), accuracy=table.accuracy, mean_loss=table.mean_loss,
        state_hash=table.state_hash, layer=table.layer, step=int(table.step or 0), seconds=scored.seconds,
        embedding_dims=int(table.embedding.shape[1]) if table.embedding.ndim == 2 else 0,
        inputs_kept=scored.inputs is not None)


def region_summary(region: Any, verdict: str = "unchecked", sentence: str = "") -> ProtoRegionSummary:
    return ProtoRegionSummary(
        region_id=region.id, size=region.size, mean_loss=region.mean_loss, loss_ratio=region.loss_ratio,
        accuracy=region.accuracy, excess_loss=region.excess_loss, verdict=verdict, sentence=sentence)


def region_set(regions: Any, step: int, descriptions: dict[str, Any] | None = None) -> ProtoRegionSetSummary:
    descriptions = descriptions or {}
    items = []
    for region in regions.regions:
        d = descriptions.get(region.id)
        items.append(region_summary(region, d.verdict if d else "unchecked", d.sentence if d else ""))
    return ProtoRegionSetSummary(
        regions=items, state_hash=regions.state_hash, k=regions.k, ratio=regions.ratio,
        overall_mean_loss=regions.overall_mean_loss, samples=len(regions.index), seed=regions.seed, step=step)


def region_description(d: Any, region: Any) -> ProtoRegionDescription:
    return ProtoRegionDescription(
        summary=region_summary(region, d.verdict, d.sentence), accuracy_in=d.accuracy_in,
        accuracy_out=d.accuracy_out, class_mix={int(k): int(v) for k, v in d.class_mix.items()},
        features=[ProtoFeatureDifference(feature=name, difference=value) for name, value in d.features],
        trend=d.trend, trend_slope=d.trend_slope, examples=[int(i) for i in d.examples],
        noise_fraction=d.noise_fraction, split=split_value(d.split))


def slice_summary(value: Any) -> ProtoSliceSummary:
    return ProtoSliceSummary(name=value.name, split=split_value(value.split), size=len(value.indices),
                             source=value.source, examples=[int(i) for i in np.sort(value.indices)[:16]])


def per_class_error(rows: Any) -> lab_pb2.PerClassErrorResponse:
    return lab_pb2.PerClassErrorResponse(classes=[
        lab_pb2.ClassError(label=r.label, samples=r.samples, errors=r.errors, error_rate=r.error_rate,
                           mean_loss=r.mean_loss) for r in rows])


def quantiles(value: Any) -> lab_pb2.QuantilesResponse:
    return lab_pb2.QuantilesResponse(ranks=list(value.ranks), values=list(value.values), count=value.count,
                                     min=value.minimum, max=value.maximum, exact=value.exact)


def histogram(value: Any) -> lab_pb2.HistogramResponse:
    return lab_pb2.HistogramResponse(edges=value.edges.tolist(), counts=value.counts.tolist(), total=value.total,
                                     exact=value.exact)


def topk(value: Any) -> lab_pb2.TopKResponse:
    return lab_pb2.TopKResponse(indices=value.index.tolist(), losses=value.value.tolist(), steps=value.step.tolist())


def loss_bands(value: Any) -> lab_pb2.LossBandsResponse:
    return lab_pb2.LossBandsResponse(steps=value.step.tolist(), ranks=list(value.ranks),
                                     values=value.values.reshape(-1).tolist())


def trajectory(value: Any) -> lab_pb2.SampleTrajectoryResponse:
    series = [ProtoTrajectorySeries(split=split_value(name), steps=points.step.tolist(),
                                    epochs=points.epoch.tolist(), losses=points.loss.tolist())
              for name, points in value.splits.items()]
    return lab_pb2.SampleTrajectoryResponse(index=value.index, series=series)


def sample(value: Any) -> lab_pb2.GetSampleResponse:
    response = lab_pb2.GetSampleResponse(index=value.index, shape=list(value.values.shape),
                                         values=value.values.reshape(-1).tolist(), image=value.image)
    if value.label is not None:
        response.label = value.label
    return response


def nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
