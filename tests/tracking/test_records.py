"""Logs, params, metrics and tracks through the Experiment API, and their Parquet read by pyarrow directly."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from onthefly.tracking import Experiment, InvalidArgument
from onthefly.tracking.columns import ROW_KEY_PREFIX


def test_logs_with_levels_and_metadata(make_exp):
    exp = make_exp()
    exp.log("started", level="info", metadata={"gpu": 0})
    exp.log("details", level="debug")
    exp.logs.warn("slow step", step=12, seconds=1.5)
    exp.log("aliases work", level="warning")
    exp.logs.error("oom", device="cuda:0")
    exp.log("the end", level="fatal", metadata={"nested": {"a": [1, 2]}})
    rows = exp.logs.read()
    assert [(r["level"], r["message"]) for r in rows] == [
        ("info", "started"), ("debug", "details"), ("warn", "slow step"), ("warn", "aliases work"),
        ("error", "oom"), ("fatal", "the end")]
    assert rows[0]["metadata"] == {"gpu": 0} and rows[1]["metadata"] is None
    assert rows[2]["metadata"] == {"step": 12, "seconds": 1.5}
    assert rows[5]["metadata"] == {"nested": {"a": [1, 2]}}
    assert [r["message"] for r in exp.logs.read(level="error")] == ["oom", "the end"]
    with pytest.raises(InvalidArgument, match="not one of debug, info, warn, error, fatal"):
        exp.log("x", level="loud")


def test_log_metadata_is_taken_at_call_time(make_exp):
    exp = make_exp()
    meta = {"items": [1]}
    exp.log("snapshot", metadata=meta)
    meta["items"].append(2)
    assert exp.logs.read()[0]["metadata"] == {"items": [1]}


def test_params_merge_nested_dotted_and_get_flat_or_nested(make_exp):
    exp = make_exp()
    exp.params.set(learning_rate=1e-3, batch_size=32, model={"depth": 4, "act": "relu"})
    exp.params.set({"model": {"width": 128}}, seed=7)  # nested dicts merge key by key
    exp.params.set(**{"optim.name": "adam"})
    assert exp.params.get() == {"learning_rate": 1e-3, "batch_size": 32, "model.depth": 4, "model.act": "relu",
                                "model.width": 128, "seed": 7, "optim.name": "adam"}
    assert exp.params.get(flatten=False) == {"learning_rate": 1e-3, "batch_size": 32, "seed": 7,
                                             "model": {"depth": 4, "act": "relu", "width": 128},
                                             "optim": {"name": "adam"}}
    exp.params.set(batch_size=64, optim="sgd")  # a leaf replaces the subtree at its key
    got = exp.params.get()
    assert got["batch_size"] == 64 and got["optim"] == "sgd" and "optim.name" not in got and got["seed"] == 7


def test_params_refuse_what_json_cannot_hold(make_exp):
    exp = make_exp()
    with pytest.raises(InvalidArgument, match="not JSON-serializable"):
        exp.params.set(fn=object())
    exp.params.set(nan=float("nan"), inf=float("inf"))
    got = exp.params.get()
    assert math.isnan(got["nan"]) and got["inf"] == math.inf


def _fields(point: dict) -> dict:
    """A read() point's fields without its time (``_ts``)."""
    return {k: v for k, v in point["data"].items() if k != "_ts"}


def test_metrics_log_read_and_summary(make_exp):
    exp = make_exp()
    train = exp.metrics("train")
    assert exp.metrics("train") is train  # cached builder
    for step in range(10):
        train.log(loss=1.0 / (step + 1), accuracy=step / 10, step=step, epoch=step // 5)
    train.log({"loss": 0.05}, step=10, epoch=2)  # dict form
    exp.metrics("val").log(loss=0.3, epoch=0)
    page = train.read(start_index=2, limit=3)
    assert [r["data"]["step"] for r in page["data"]] == [2, 3, 4]
    assert page["totalDataPoints"] == 11 and page["hasMore"] and page["startIndex"] == 2
    assert page["data"][0]["index"] == 2 and page["data"][0]["createdAt"].endswith("Z")  # ML-Dash's format
    summary = train.summary()
    assert summary["loss"]["count"] == 11 and summary["loss"]["min"] == 0.05
    assert summary["loss"]["max"] == 1.0 and summary["loss"]["last"] == 0.05 and summary["loss"]["first"] == 1.0
    assert summary["step"]["mean"] == 5.0
    assert summary["accuracy"]["count"] == 10  # the last row had no accuracy
    assert sorted(exp.metrics.names()) == ["train", "val"]
    stats = train.stats()
    assert stats["totalDataPoints"] == "11" and stats["fields"]["loss"]["count"] == 11  # a string, as ML-Dash


def test_metrics_explicit_timestamps_and_nested_log(make_exp):
    exp = make_exp()
    m = exp.metrics("t")
    m.log(v=1, _ts=100.0)
    m.log(v=2, timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    m.log(v=3, _ts=-1)  # the previous point's time
    stamps = [r["data"]["_ts"] for r in m.read()["data"]]  # the time is in the data, as in ML-Dash
    assert stamps == [100.0, 1704067200.0, 1704067200.0]
    exp.metrics.log(epoch=1, train=dict(loss=0.1), eval=dict(loss=0.2))
    assert _fields(exp.metrics("train").read()["data"][0]) == {"epoch": 1, "loss": 0.1}
    assert _fields(exp.metrics("eval").read()["data"][0]) == {"epoch": 1, "loss": 0.2}


def test_metric_type_clash_is_refused_visibly(make_exp):
    exp = make_exp()
    m = exp.metrics("clash")
    m.log(v=1.0)
    with pytest.warns(RuntimeWarning, match="refused"):
        m.log(v="text")
        exp.flush()
    assert m.read()["totalDataPoints"] == 1
    assert exp.writer_stats()["refused_rows"] == 1
    assert any("'v'" in r for r in exp.writer_stats()["reasons"])
    exp.run.complete()
    assert exp.record.writer["refused_rows"] == 1  # kept in experiment.json at close


def test_a_field_named_like_another_metrics_row_key_is_refused_visibly(make_exp):
    exp = make_exp()
    train, evals = exp.metrics("train"), exp.metrics("eval")
    with pytest.warns(RuntimeWarning, match="reserved"):
        train.log(loss=0.5)
        train.log(**{ROW_KEY_PREFIX + "eval": 1.0}, loss=0.4)
        evals.log(**{ROW_KEY_PREFIX + "train": 3.0}, loss=0.2)  # an eval row among train's: not stored as train's
        train.log(loss=0.1)
        exp.flush()
    assert [_fields(row) for row in train.read()["data"]] == [{"loss": 0.5}, {"loss": 0.1}]
    assert exp.metrics.names() == ["train"]  # eval's only row was refused
    stats = exp.writer_stats()
    assert stats["refused_rows"] == 2 and stats["reasons"] and all("is reserved" in r for r in stats["reasons"])


def test_a_row_whose_own_row_key_is_a_field_name_does_not_stop_the_writer(make_exp):
    exp = make_exp()
    train = exp.metrics("train")
    train.log(**{ROW_KEY_PREFIX + "train": 2.0}, loss=0.3)  # the call time takes that field's place and value
    train.log(loss=0.1)
    exp.flush()
    assert [_fields(row) for row in train.read()["data"]] == [{"loss": 0.3}, {"loss": 0.1}]
    assert exp.writer_stats()["last_error"] == ""


def test_tracks_merge_same_timestamp_and_read_by_time_range(make_exp):
    exp = make_exp()
    pos = exp.tracks("robot/position")
    pos.append(step=7, x=0.1, y=0.2, z=0.3, _ts=1.0)
    pos.append({"vx": 9.0}, _ts=1.0)  # same timestamp: merged into one entry
    pos.append(x=0.5, _ts=2.0)
    pos.append(x=0.7, _ts=3.0)
    pos.append(y=0.9, _ts=-1)  # merges into the previous entry (t=3)
    exp.flush()
    pos.append(z=1.0, _ts=2.0)  # merges even across writes
    entries = pos.read()["entries"]
    assert entries[0] == {"timestamp": 1.0, "step": 7, "x": 0.1, "y": 0.2, "z": 0.3, "vx": 9.0}
    assert [e["timestamp"] for e in entries] == [1.0, 2.0, 3.0]
    assert entries[1] == {"timestamp": 2.0, "x": 0.5, "z": 1.0} and entries[2]["y"] == 0.9
    window = pos.read(start_timestamp=1.5, end_timestamp=3.0)
    assert [e["timestamp"] for e in window["entries"]] == [2.0, 3.0] and window["count"] == 2
    assert pos.read_table(columns_=["x"]).column_names == ["timestamp", "x"]
    assert pos.slice(0, 10).findByTime(2.5)["x"] == 0.5
    # separate calls without a timestamp never merge by accident
    auto = exp.tracks("auto")
    for i in range(50):
        auto.append(i=i)
    assert len(auto.read()["entries"]) == 50


def test_parquet_is_readable_by_pyarrow_directly(make_exp, dash):
    exp = make_exp("alice/proj/pq")
    for step in range(5):
        exp.metrics("train/loss").log(loss=float(step), step=step)
        exp.tracks("pose").append(x=step, _ts=float(step))
    exp.log("hi")
    exp.run.complete()
    folder = dash / "alice/proj/pq"
    table = ds.dataset(folder / "metrics" / "train%2Floss", format="parquet").to_table()
    assert table.column("loss").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert table.schema.field("timestamp").type == "double"
    parts = list((folder / "tracks" / "pose").glob("part-*.parquet"))
    assert pq.read_table(parts[0]).column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert ds.dataset(folder / "logs", format="parquet").to_table().column("message").to_pylist() == ["hi"]


def test_a_stream_whose_fields_change_still_reads_as_one_dataset(make_exp, dash):
    """ints that later become floats, and fields added later or in a later session: every part is kept in
    the stream's unified schema, so a dataset reader needs no options."""
    exp = make_exp("alice/proj/evolve")
    m = exp.metrics("m")
    m.log(v=1, phase="a")
    exp.flush()
    m.log(v=1.5, extra=[1, 2])
    exp.flush()
    exp.run.complete()
    with make_exp("alice/proj/evolve", start=False).run as again:
        again.metrics("m").log(v=7, late="x")
    table = ds.dataset(dash / "alice/proj/evolve/metrics/m", format="parquet").to_table()
    assert table.column_names == ["timestamp", "v", "phase", "extra", "late"]
    assert table.column("v").to_pylist() == [1.0, 1.5, 7.0]
    assert table.column("extra").to_pylist() == [None, [1, 2], None]
    assert table.column("late").to_pylist() == [None, None, "x"]



def test_two_writers_with_equal_automatic_timestamps_keep_every_entry(tmp_path):
    """Two processes track into one experiment; their calls land on the same instants (a fixed clock)."""
    import subprocess
    import sys
    import textwrap

    from onthefly.tracking.records import StreamKind
    from onthefly.tracking.store import LocalStore

    script = textwrap.dedent("""
        import sys
        from onthefly.tracking import Experiment
        exp = Experiment(prefix="alice/proj/shared", dash_root=sys.argv[1], durable=False)
        exp.run.start()
        for i in range(200):
            exp.tracks("pose").append({"x": float(i), "writer": int(sys.argv[2])}, lambda: 1000.0)
        exp.run.complete()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "dash"), str(n)]) for n in (0, 1)]
    assert [p.wait(120) for p in procs] == [0, 0]
    table, total = LocalStore(tmp_path / "dash").read("alice/proj/shared", StreamKind.TRACK, "pose")
    rows = table.to_pylist()
    assert len(rows) == 400
    assert sorted((r["writer"], r["x"]) for r in rows) == sorted((n, float(i)) for i in range(200) for n in (0, 1))


def test_the_same_writer_relogging_a_timestamp_later_replaces_its_value(make_exp, dash):
    """One process: a later batch with a different value at the same explicit _ts corrects the entry."""
    exp = make_exp()
    pose = exp.tracks("pose")
    pose.append(x=1.0, y=2.0, _ts=5.0)
    pose.append(x=3.0, _ts=6.0)
    exp.flush()  # the correction arrives in a later batch (its own journal write)
    pose.append(x=1.5, _ts=5.0)
    entries = pose.read()["entries"]
    assert entries == [{"timestamp": 5.0, "x": 1.5, "y": 2.0}, {"timestamp": 6.0, "x": 3.0}]
    exp.run.complete()  # compacted into a Parquet part: read the same
    from onthefly.tracking.records import StreamKind
    from onthefly.tracking.store import LocalStore

    table, _ = LocalStore(dash).read("alice/proj/run-1", StreamKind.TRACK, "pose")
    assert table.to_pylist() == [{"timestamp": 5.0, "x": 1.5, "y": 2.0}, {"timestamp": 6.0, "x": 3.0, "y": None}]


def test_two_experiments_in_one_process_are_two_writers(make_exp, dash):
    """Two Experiment objects on one experiment in one process: their entries at one timestamp are both
    kept, while each one's own later value still corrects its own entry."""
    first, second = make_exp(), make_exp()
    first.tracks("pose").append(x=1.0, _ts=5.0)
    first.flush()
    second.tracks("pose").append(x=2.0, _ts=5.0)
    second.flush()
    first.tracks("pose").append(x=1.5, _ts=5.0)  # first's correction of its own entry
    first.flush()
    entries = second.tracks("pose").read()["entries"]
    assert sorted(e["x"] for e in entries) == [1.5, 2.0]
    first.run.complete()
    second.run.complete()
    from onthefly.tracking.records import StreamKind
    from onthefly.tracking.store import LocalStore

    table, _ = LocalStore(dash).read("alice/proj/run-1", StreamKind.TRACK, "pose")
    assert sorted(table.column("x").to_pylist()) == [1.5, 2.0]


def test_two_clients_of_a_server_at_one_timestamp_keep_both_entries(server):
    """Through the tracking server every row is written by the server's process: rows with the same
    timestamp and different values are still kept, as the server cannot tell its clients apart."""
    srv, tokens = server
    exps = [Experiment(prefix="alice/proj/shared", dash_url=srv.address, token=tokens["alice"]) for _ in range(2)]
    for n, exp in enumerate(exps):
        exp.run.start()
        exp.tracks("pose").append(x=float(n), _ts=7.0)
        exp.flush()
    entries = exps[0].tracks("pose").read()["entries"]
    assert sorted(e["x"] for e in entries) == [0.0, 1.0]
    for exp in exps:
        exp.close()
