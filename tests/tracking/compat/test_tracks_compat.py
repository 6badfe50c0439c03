"""Tracks: append, merging of equal timestamps, read formats, slices and floor matching."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracking.compat.mdcompat import start


def _robot(exp):
    t = exp.tracks("robot/pos")
    assert t.append(x=1, y=2, _ts=1.0) is t
    t.append(z=3, _ts=1.0)  # same timestamp: merged into one entry
    t.append(x=2, _ts=2.0)
    t.append(x=5, _ts=5.0)
    exp.flush()
    return t


def test_read_json_and_merge(md):
    with start(md).run as exp:
        t = _robot(exp)
        assert t.read() == {"entries": [{"timestamp": 1.0, "x": 1, "y": 2, "z": 3}, {"timestamp": 2.0, "x": 2},
                                        {"timestamp": 5.0, "x": 5}], "count": 3}
        assert t.read(start_timestamp=1.5) == {"entries": [{"timestamp": 2.0, "x": 2}, {"timestamp": 5.0, "x": 5}],
                                               "count": 2}
        assert t.read(end_timestamp=2.0)["count"] == 2
        assert t.list_entries() == t.read()["entries"]


def test_read_jsonl_bytes(md):
    with start(md).run as exp:
        t = _robot(exp)
        data = t.read(format="jsonl")
        assert isinstance(data, bytes)
        assert [json.loads(line) for line in data.decode().splitlines()] == t.read()["entries"]


def test_bad_format_and_bad_ts_raise_configuration_error(md):
    with start(md).run as exp:
        t = _robot(exp)
        with pytest.raises(md.ConfigurationError):
            t.read(format="bad")
        with pytest.raises(md.ConfigurationError):
            t.append(x=1, _ts="abc")


def test_slice_iteration_and_floor_match(md):
    with start(md).run as exp:
        t = _robot(exp)
        s = t.slice(1.0, 10)
        assert len(s) == 3 and [e["timestamp"] for e in s] == [1.0, 2.0, 5.0]
        assert s.findByTime(1.5) == {"timestamp": 1.0, "x": 1, "y": 2, "z": 3}
        assert s.findByTime([2.5, 9]) == [{"timestamp": 2.0, "x": 2}, {"timestamp": 5.0, "x": 5}]
        assert s.findByTime(2.0)["x"] == 2
        with pytest.raises(md.StorageError):
            s.findByTime(0.5)
        assert len(t.slice(1.5, 4.0)) == 1


def test_nested_fields_flatten_and_numpy_values_become_lists(md):
    with start(md).run as exp:
        exp.tracks("other").append(a={"b": 1}, _ts=3.0)
        exp.tracks("np").append(q=np.array([1.0, 2.0]), s=np.float32(1.5), _ts=1.0)
        exp.flush()
        assert exp.tracks("other").read()["entries"] == [{"timestamp": 3.0, "a.b": 1}]
        assert exp.tracks("np").read()["entries"] == [{"timestamp": 1.0, "q": [1.0, 2.0], "s": 1.5}]


def test_auto_timestamps_increase_strictly(md):
    with start(md).run as exp:
        t = exp.tracks("fast")
        for i in range(50):
            t.append(i=i)
        exp.flush()
        stamps = [e["timestamp"] for e in t.read()["entries"]]
        assert len(stamps) == 50 and all(b > a for a, b in zip(stamps, stamps[1:]))


def test_read_mocap_parquet_columns_and_empty(md):
    import io

    import pyarrow.parquet as pq

    with start(md).run as exp:
        t = exp.tracks("robot/arm")
        for i in range(3):
            t.append(x=i * 1.0, q=[i, i + 1], _ts=i * 0.5)
        exp.flush()
        assert t.read(format="mocap") == {
            "version": "1.0",
            "metadata": {"topic": "robot/arm", "description": None, "tags": [], "fps": 30, "duration": 1.0,
                         "frameCount": 3, "startTime": 0.0, "endTime": 1.0},
            "channels": ["q", "x"],
            "frames": [{"time": 0.0, "x": 0.0, "q": [0, 1]}, {"time": 0.5, "x": 1.0, "q": [1, 2]},
                       {"time": 1.0, "x": 2.0, "q": [2, 3]}]}
        data = t.read(format="parquet")
        table = pq.read_table(io.BytesIO(data))
        assert table.to_pylist() == [{"timestamp": 0.0, "x": 0.0, "q": [0, 1]},
                                     {"timestamp": 0.5, "x": 1.0, "q": [1, 2]},
                                     {"timestamp": 1.0, "x": 2.0, "q": [2, 3]}]
        assert pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).compression == "ZSTD"
        assert t.read(columns=["x", "nope"])["entries"] == [{"timestamp": 0.0, "x": 0.0},
                                                           {"timestamp": 0.5, "x": 1.0},
                                                           {"timestamp": 1.0, "x": 2.0}]
        assert exp.tracks("never").read() == {"entries": [], "count": 0}
        assert exp.tracks("never").read(format="jsonl") == b""
