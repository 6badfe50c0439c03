"""Hard inputs: names with '/' and unicode, NaN/Inf, huge dicts, 1 M points in a burst, several threads."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
import torch

from onthefly.tracking import InvalidArgument


def test_stream_names_with_slashes_and_unicode_round_trip(make_exp, dash):
    exp = make_exp("alice/проект/运行-1")
    names = ["train/loss", "ünïcödé/数据", "a b/c?d#e%f", ".hidden", "x" * 250]
    for i, name in enumerate(names):
        exp.metrics(name).log(v=i)
        exp.tracks(name).append(v=i, _ts=1.0)
    assert sorted(exp.metrics.names()) == sorted(names)
    assert sorted(t["name"] for t in exp.tracks.list_all()) == sorted(names)
    for i, name in enumerate(names):
        assert exp.metrics(name).read()["data"][0]["data"]["v"] == i
    folders = [p.name for p in (dash / "alice/проект/运行-1/metrics").iterdir()]
    assert all("/" not in f and not f.startswith(".") and len(f.encode()) <= 200 for f in folders)
    exp.files("dir/ünï").save_text("ok", to="файл.txt")
    assert exp.files("dir/ünï/файл.txt").read_text() == "ok"
    for bad in ("", "  ", "tab\there", "y" * 300):
        with pytest.raises(InvalidArgument):
            exp.metrics(bad)
    with pytest.raises(InvalidArgument, match=r"'\.\.'"):
        exp.files("a/../../etc").save_text("x", to="passwd")


def test_nan_and_inf_are_stored_and_json_stays_standard(make_exp, tmp_path):
    exp = make_exp()
    m = exp.metrics("m")
    m.log(v=float("nan"), w=1.0)
    m.log(v=float("inf"), w=float("-inf"))
    m.log(v=2.0, w=np.float32(3.5))
    values = [r["data"]["v"] for r in m.read()["data"]]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == 2.0
    summary = m.summary()["v"]
    assert summary["nan"] == 1 and summary["max"] == math.inf and summary["min"] == 2.0
    exp.log("odd", metadata={"x": float("nan")})
    exp.tracks("t").append(x=float("-inf"), _ts=1.0)
    raw = exp.tracks("t").read(format="jsonl").decode()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON output"))
    assert exp.tracks("t").read()["entries"][0]["x"] == -math.inf
    assert math.isnan(exp.logs.read()[0]["metadata"]["x"])
    stored = next((tmp_path / "dash").rglob("experiment.json")).read_text()
    json.loads(stored, parse_constant=lambda c: pytest.fail(f"bare {c} in experiment.json"))


def test_huge_ints_become_floats_without_a_false_alarm(make_exp, recwarn):
    exp = make_exp()
    exp.metrics("m").log(v=1)
    exp.metrics("m").log(v=2**70)  # beyond int64
    assert exp.metrics("m").read_table().column("v").to_pylist() == [1.0, float(2**70)]
    assert exp.writer_stats()["reasons"] == [] and not [w for w in recwarn if "refused" in str(w.message)]


def test_huge_dicts(make_exp):
    exp = make_exp()
    params = {f"layer{i}": {f"w{j}": i * j for j in range(20)} for i in range(500)}  # 10 000 keys
    exp.params.set(params)
    got = exp.params.get()
    assert len(got) == 10_000 and got["layer499.w19"] == 499 * 19
    assert exp.params.get(flatten=False)["layer7"]["w3"] == 21
    wide = {f"f{i}": float(i) for i in range(2000)}
    exp.metrics("wide").log(**wide)
    row = exp.metrics("wide").read()["data"][0]["data"]
    assert len(row) == 2001  # and _ts, as in ML-Dash
    assert row["f1999"] == 1999.0
    exp.log("big metadata", metadata={"blob": list(range(50_000))})
    assert len(exp.logs.read()[0]["metadata"]["blob"]) == 50_000


def test_one_million_points_in_a_burst(make_exp):
    exp = make_exp(durable=False)
    log = exp.metrics("burst").log
    n = 1_000_000
    start = time.perf_counter()
    for i in range(n):
        log(v=i)
    burst_seconds = time.perf_counter() - start
    exp.flush()
    table = exp.metrics("burst").read_table()
    assert table.num_rows == n
    assert table.column("v")[0].as_py() == 0 and table.column("v")[n - 1].as_py() == n - 1
    stats = exp.writer_stats()
    assert stats["written_rows"] == n and stats["refused_rows"] == 0 and stats["failed_rows"] == 0
    assert stats["pending"] == 0
    assert burst_seconds < 30, f"1 M calls took {burst_seconds:.1f}s"


def test_values_are_taken_at_call_time(make_exp):
    exp = make_exp()
    arr, lst, tensor = np.array([1.0, 2.0]), [1, 2], torch.tensor([5.0])
    exp.metrics("m").log(arr=arr, lst=lst, t=tensor, scalar=torch.tensor(0.25))
    arr[0], tensor[0] = 99.0, 99.0
    lst.append(3)
    row = exp.metrics("m").read()["data"][0]["data"]
    assert row.pop("_ts") > 0  # the point's time, as in ML-Dash
    assert row == {"arr": [1.0, 2.0], "lst": [1, 2], "t": [5.0], "scalar": 0.25}


def test_logging_from_several_threads(make_exp):
    exp = make_exp(batch_size=50)
    threads, per_thread = 6, 3000
    barrier = threading.Barrier(threads)
    errors = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            m = exp.metrics(f"thread-{k % 2}")
            for i in range(per_thread):
                m.log(k=k, i=i)
                if i % 500 == 0:
                    exp.log(f"thread {k} at {i}")
                    exp.tracks("shared").append(k=k, i=i)
                if i % 1000 == 0:
                    exp.flush()
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors
    rows = exp.metrics("thread-0").read_table().to_pylist() + exp.metrics("thread-1").read_table().to_pylist()
    assert len(rows) == threads * per_thread
    for k in range(threads):
        mine = [r["i"] for r in rows if r["k"] == k]
        assert mine == list(range(per_thread))  # each thread's rows complete and in order
    assert len(exp.logs.read()) == threads * 6
    assert len(exp.tracks("shared").read()["entries"]) == threads * 6


def test_closing_while_threads_log_loses_no_accepted_row(make_exp):
    """A call that returned normally is stored; after the close, calls raise NotRunning."""
    import sys

    from onthefly.tracking import NotRunning

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen every race window
    try:
        for trial in range(20):
            exp = make_exp(f"alice/race/t{trial}", batch_size=50)
            accepted = [0] * 4
            go = threading.Event()

            def work(k: int) -> None:
                metric = exp.metrics("m")
                go.wait()
                while True:
                    try:
                        metric.log(k=k) if k % 2 else exp.log("line")
                    except NotRunning:
                        return
                    accepted[k] += 1

            workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
            for w in workers:
                w.start()
            go.set()
            while sum(accepted) < 500 or not all(accepted):
                time.sleep(0)
            exp.run.complete()
            for w in workers:
                w.join(30)
            assert exp.metrics("m").read_table().num_rows == accepted[1] + accepted[3]
            assert len(exp.logs.read()) == accepted[0] + accepted[2]
    finally:
        sys.setswitchinterval(old_interval)
