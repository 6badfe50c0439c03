"""Metrics: log, the root metric, _ts, read/stats/list_all shapes, the aggregation buffer and summary_cache."""

from __future__ import annotations

import math
import re
import warnings

import pytest

from tracking.compat.mdcompat import is_ours, start

ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
READ_KEYS = {"data", "startIndex", "endIndex", "total", "hasMore"}
OUR_READ_EXTRA = {"totalDataPoints"}


def _points(result):
    return [{k: v for k, v in p["data"].items() if k != "_ts"} for p in result["data"]]


def test_log_returns_the_cached_builder(md):
    with start(md).run as exp:
        m = exp.metrics("train")
        assert exp.metrics("train") is m
        assert m.log(loss=0.5, step=0) is m
        assert m.flush() is m
        assert exp.metrics.flush() is exp.metrics


def test_read_shape_and_values(md):
    with start(md).run as exp:
        m = exp.metrics("train")
        for i in range(5):
            m.log(loss=1 / (i + 1), step=i)
        m.log(loss=0.1, step=5, _ts=123.5)
        exp.flush()
        page = m.read(start_index=1, limit=3)
        keys = set(page) - (OUR_READ_EXTRA if is_ours(md) else set())
        assert keys == READ_KEYS
        assert (page["startIndex"], page["endIndex"], page["hasMore"]) == (1, 3, True)
        assert [p["index"] for p in page["data"]] == [1, 2, 3]
        assert all(set(p) == {"index", "data", "createdAt"} and ISO_Z.fullmatch(p["createdAt"]) for p in page["data"])
        assert _points(page) == [{"loss": 0.5, "step": 1}, {"loss": 1 / 3, "step": 2}, {"loss": 0.25, "step": 3}]
        assert all(isinstance(p["data"]["_ts"], float) for p in page["data"])
        last = m.read(start_index=5)
        assert last["data"][0]["data"] == {"loss": 0.1, "step": 5, "_ts": 123.5}
        assert (last["endIndex"], last["hasMore"]) == (5, False)
        empty = m.read(start_index=10)
        assert (empty["data"], empty["endIndex"], empty["hasMore"]) == ([], 9, False)


def test_read_total_is_the_stored_count_in_ours(md):
    """ML-Dash's ``total`` repeats the number of points returned (a documented defect); ours is the
    number stored, as the name says: a deliberate difference."""
    with start(md).run as exp:
        for i in range(5):
            exp.metrics("m").log(v=i)
        exp.flush()
        page = exp.metrics("m").read(limit=2)
        assert page["total"] == (5 if is_ours(md) else 2)


def test_root_metric_and_dict_valued_keywords(md):
    with start(md).run as exp:
        assert exp.metrics.log(epoch=1, train=dict(acc=0.5), eval=dict(acc=0.4)) is exp.metrics
        exp.metrics.log(train=dict(acc=0.6))  # no scalars: nothing for the unnamed metric
        exp.metrics.log(epoch=2, _flush=True)
        exp.flush()
        # the unnamed metric is the one named "None" (ML-Dash's metrics(None).read() raises TypeError)
        assert _points(exp.metrics("None").read()) == [{"epoch": 1}, {"epoch": 2}]
        if is_ours(md):
            assert exp.metrics(None) is exp.metrics("None")
        stats = exp.metrics("None").stats()
        assert (stats["metricId"], stats["name"], stats["totalDataPoints"]) == ("local-metric-None", None, "2")
        listed = {x["metricId"]: x["name"] for x in exp.metrics("train").list_all()}
        assert listed["local-metric-None"] is None and listed["local-metric-train"] == "train"
        assert _points(exp.metrics("train").read()) == [{"epoch": 1, "acc": 0.5}, {"acc": 0.6}]
        assert _points(exp.metrics("eval").read()) == [{"epoch": 1, "acc": 0.4}]


def test_ts_minus_one_inherits_this_threads_last_timestamp(md):
    with start(md).run as exp:
        with pytest.raises(md.ConfigurationError):
            exp.metrics("a").log(v=0, _ts=-1)  # nothing logged yet in this thread
        exp.metrics("a").log(v=1, _ts=50.0)
        exp.metrics("b").log(v=2, _ts=-1)
        exp.tracks("t").append(x=1, _ts=-1)
        exp.metrics("a").log(v=3)
        exp.tracks("t").append(x=2, _ts=-1)
        exp.flush()
        b = exp.metrics("b").read()["data"][0]["data"]
        a = exp.metrics("a").read()["data"]
        entries = exp.tracks("t").read()["entries"]
        assert b["_ts"] == 50.0 and entries[0]["timestamp"] == 50.0
        assert entries[1]["timestamp"] == a[-1]["data"]["_ts"]


def test_stats_and_list_all_shapes(md):
    with start(md).run as exp:
        m = exp.metrics("train", description="loss curve", tags=["a"])
        for i in range(3):
            m.log(loss=i, step=i)
        exp.metrics("val").log(loss=1)
        exp.flush()
        stats = m.stats()
        keys = set(stats) - ({"fields"} if is_ours(md) else set())
        assert keys == {"metricId", "name", "description", "tags", "metadata", "totalDataPoints",
                        "bufferedDataPoints", "chunkedDataPoints", "totalChunks", "chunkSize", "firstDataAt",
                        "lastDataAt", "createdAt", "updatedAt"}
        assert (stats["metricId"], stats["name"], stats["description"], stats["tags"]) == (
            "local-metric-train", "train", "loss curve", ["a"])
        assert (stats["totalDataPoints"], stats["chunkedDataPoints"], stats["totalChunks"]) == ("3", "0", 0)
        assert ISO_Z.fullmatch(stats["firstDataAt"]) and ISO_Z.fullmatch(stats["lastDataAt"])
        listed = {x["name"]: x for x in m.list_all()}
        assert set(listed) == {"train", "val"}
        assert listed["train"]["totalDataPoints"] == "3" and listed["train"]["metricId"] == "local-metric-train"
        assert {"metricId", "name", "description", "tags", "totalDataPoints", "createdAt"} <= set(listed["val"])


def test_buffer_log_summary_every_aggregation(md):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, None]
    aggs = ("mean", "std", "min", "max", "count", "median", "sum", "p50", "p90", "p95", "p99", "first", "last")
    with start(md).run as exp:
        for v in values:
            exp.metrics("train").buffer(loss=v, acc=0.5)
        exp.metrics("val").buffer(loss=2.0)
        peeked = exp.metrics.buffer.peek("train", "loss", limit=3)
        assert list(peeked) == ["loss"] and peeked["loss"][:2] == [9.0, 2.0] and math.isnan(peeked["loss"][2])
        assert set(exp.metrics.buffer.peek()) == {"train/loss", "train/acc", "val/loss"}
        exp.metrics.buffer.log_summary(*aggs, step=10)
        assert exp.metrics.buffer.peek() == {}
        exp.flush()
        train = _points(exp.metrics("train").read())
        val = _points(exp.metrics("val").read())
    assert len(train) == 1 and len(val) == 1
    row = train[0]
    assert row["step"] == 10 and row["loss.count"] == 7 and row["loss.sum"] == 25.0
    assert row["loss.mean"] == pytest.approx(25 / 7) and row["loss.std"] == pytest.approx(2.8199966, rel=1e-6)
    assert (row["loss.min"], row["loss.max"], row["loss.median"], row["loss.p50"]) == (1.0, 9.0, 3.0, 3.0)
    assert (row["loss.first"], row["loss.last"]) == (3.0, 2.0)
    assert row["loss.p90"] == pytest.approx(6.6) and row["loss.p99"] == pytest.approx(8.76)
    assert row["acc.std"] == 0.0 and row["acc.count"] == 8
    assert val[0] == {"step": 10, **{f"loss.{a}": v for a, v in {
        "mean": 2.0, "std": 0.0, "min": 2.0, "max": 2.0, "count": 1, "median": 2.0, "sum": 2.0, "p50": 2.0,
        "p90": 2.0, "p95": 2.0, "p99": 2.0, "first": 2.0, "last": 2.0}.items()}}


def test_buffer_default_aggregation_and_errors(md):
    with start(md).run as exp:
        exp.metrics("train").buffer(loss=1.0).buffer(loss=3.0)
        with pytest.raises(ValueError):
            exp.metrics("train").buffer(loss="high")
        with pytest.raises(ValueError):
            exp.metrics.buffer.log_summary("mode")
        exp.metrics.buffer.log_summary()
        exp.flush()
        assert _points(exp.metrics("train").read()) == [{"loss.mean": 2.0}]


def test_summary_cache(md):
    with start(md).run as exp:
        cache = exp.metrics("train").summary_cache
        assert exp.metrics("train").summary_cache is cache
        for v in (0.5, 0.3, None, 0.4):
            cache.store(loss=v)
        cache.set(lr=0.1, epoch=1)
        cache.set(epoch=2)
        assert cache.peek("loss", limit=2)["loss"][-1] == 0.4
        with pytest.raises(ValueError):
            cache.store(loss="x")
        cache.summarize()
        assert cache.peek() == {}
        cache.summarize()  # nothing stored: no row
        cache.store(acc=1.0)
        cache.summarize(clear=False)
        assert cache.peek() == {"acc": [1.0]}
        cache.summarize()
        exp.flush()
        rows = _points(exp.metrics("train").read())
    assert len(rows) == 3
    first = rows[0]
    assert (first["lr"], first["epoch"], first["loss.count"], first["loss.min"], first["loss.max"]) == (0.1, 2, 3, 0.3, 0.5)
    assert first["loss.mean"] == pytest.approx(0.4) and first["loss.std"] == pytest.approx(0.1)
    assert set(first) == {"lr", "epoch", "loss.mean", "loss.min", "loss.max", "loss.count", "loss.std"}
    assert rows[1] == rows[2] == {"acc.mean": 1.0, "acc.min": 1.0, "acc.max": 1.0, "acc.count": 1, "acc.std": 0.0}


def test_unsummarized_values_are_not_logged(md, caplog, recwarn):
    with start(md).run as exp:
        exp.metrics("train").buffer(loss=1.0)
        exp.metrics("val").summary_cache.store(loss=1.0)
    assert exp.metrics("train").read()["data"] == [] if is_ours(md) else True
    said = " ".join(str(w.message) for w in recwarn) + caplog.text
    assert re.search(r"summar", said, re.I)


def test_reading_a_metric_never_logged(md):
    with start(md).run as exp:
        assert exp.metrics("never").read() | {"totalDataPoints": 0} == {
            "data": [], "startIndex": 0, "endIndex": -1, "total": 0, "hasMore": False, "totalDataPoints": 0}


@pytest.mark.parametrize("var", ["ML_DASH_METRIC_BATCH_SIZE", "ML_DASH_TRACK_BATCH_SIZE"])
def test_a_malformed_batch_size_variable_raises_value_error_at_construction(md, monkeypatch, var):
    monkeypatch.setenv(var, "abc")
    with pytest.raises(ValueError):
        md.Experiment("alice/proj/env", dash_root=".dash")


def test_metric_and_track_batch_sizes_write_without_a_flush(md, monkeypatch):
    """With small batch sizes and a long flush interval, full batches are written without flush(). ML-Dash's
    reads (which do not flush) see them within its 100 ms polling; ours writes once the smallest batch size
    set is pending (its reads would see every row anyway, so its writer's count is checked first)."""
    import time

    monkeypatch.setenv("ML_DASH_METRIC_BATCH_SIZE", "3")
    monkeypatch.setenv("ML_DASH_TRACK_BATCH_SIZE", "4")
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "3600")
    with start(md).run as exp:
        for i in range(6):
            exp.metrics("m").log(i=i)
        deadline = time.monotonic() + 60
        if is_ours(md):
            while exp.writer_stats()["written_rows"] < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = exp.writer_stats()
            assert stats["written_rows"] == 6 and stats["writes"] >= 1
            assert (stats["batch_size"], stats["metric_batch_size"], stats["track_batch_size"]) == (3, 3, 4)
        while True:
            try:
                got = _points(exp.metrics("m").read())
            except FileNotFoundError:  # ML-Dash: nothing written yet
                got = []
            if len(got) == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == [{"i": i} for i in range(6)]


def test_batch_sizes_above_ours_change_nothing_and_an_argument_wins(md, monkeypatch):
    monkeypatch.setenv("ML_DASH_METRIC_BATCH_SIZE", "1000")
    monkeypatch.setenv("ML_DASH_TRACK_BATCH_SIZE", "100")
    if not is_ours(md):
        md.Experiment("alice/proj/env", dash_root=".dash")  # accepted
        return
    with md.Experiment("alice/proj/env", dash_root=".dash").run as exp:
        assert exp.writer_stats()["batch_size"] == 100
    monkeypatch.setenv("ML_DASH_METRIC_BATCH_SIZE", "5")
    with md.Experiment("alice/proj/env", dash_root=".dash", batch_size=50).run as exp:
        assert exp.writer_stats()["batch_size"] == 50
