"""Metric-history answers -> onthefly.v1 history messages (the one place that maps them)."""

from __future__ import annotations

from onthefly.sessions.metric_query import MetricHistoryAnswer
from onthefly.v1.history_pb2 import EpochStart as ProtoEpochStart
from onthefly.v1.history_pb2 import GetMetricHistoryResponse as ProtoGetMetricHistoryResponse
from onthefly.v1.history_pb2 import MetricSeries as ProtoMetricSeries


def metric_history(answer: MetricHistoryAnswer) -> ProtoGetMetricHistoryResponse:
    return ProtoGetMetricHistoryResponse(
        series=[ProtoMetricSeries(name=s.name, steps=s.steps.tolist(), values=s.values.tolist(),
                                  points_in_range=s.points_in_range, downsampled=s.downsampled)
                for s in answer.series],
        last_seq=answer.last_seq,
        total_steps=answer.total_steps,
        epoch_starts=[ProtoEpochStart(epoch=epoch, step=step) for epoch, step in answer.epoch_starts],
    )
