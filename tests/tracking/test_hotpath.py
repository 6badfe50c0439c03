"""The C hot path (``onthefly.tracking._hotpath``) and its Python twin store the same thing.

The rest of the tracking suite runs with whichever implementation is in use (C once built); these tests
run the same logging script under both and compare what was stored, and compare the writer's C column
encoding with the Python one on the same rows.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pyarrow as pa
import pytest

from onthefly.tracking import columns, hotpath

# Logs a fixed sequence covering every branch of MetricBuilder.log and Metrics.__call__, then prints what
# the store holds (timestamps left out: they are call times) and what each step raised.
SCRIPT = r"""
import json, sys
import numpy as np
import torch
from onthefly.tracking import Experiment, hotpath
from onthefly.tracking.errors import NotRunning

exp = Experiment(prefix="alice/proj/hot", dash_root=sys.argv[1], durable=False, batch_size=7)
outcomes = {"implementation": hotpath.IMPLEMENTATION}
try:
    exp.metrics("train").log(loss=1.0)
except RuntimeError as exc:
    outcomes["before_start"] = type(exc).__name__
exp.run.start()
m = exp.metrics("train", description="the training curve")
assert exp.metrics("train") is m and exp.metrics(name="train") is m
for i in range(40):  # several size-triggered writes (batch_size=7)
    assert m.log(loss=i / 3, step=i) is m
m.log({"loss": 0.5, "step": 100}, step=101)          # positional dict, keywords win
# One metric's rows switching between the C path's chunks and its dict rows, in one write and across
# writes (batch_size=7): stored in call order either way.
o = exp.metrics("order")
for i, v in enumerate([1.0, np.float64(2.0), 3.0, "x", 4.0, 5.0, 6, 7.0, 2 ** 70, 9.0, True, 11.0, None, 13.0]):
    o.log(v=v, i=i) if i != 5 else o.log(i=i, v=v)      # (i=5: the same fields in another order)
for i in range(14, 40):
    o.log(v=i / 2, i=i, **({"extra": i} if i % 9 == 0 else {}))
o.log(v=40.0, i=40, _ts=-1)                             # a timestamp alias: never in a chunk
arr, ten, lst = np.arange(3.0), torch.tensor([1.0, 2.0]), [1, 2]
exp.metrics("mixed").log(a=arr, t=ten, l=lst, d={"x": 1}, s="text", b=True, n=None, big=2 ** 70, f=float("nan"))
arr[0], ten[0], lst[0] = 99.0, 99.0, 99                 # snapshots were taken at call time
exp.metrics("mixed").log(a=arr, t=ten, l=lst, d={"x": 2}, s="more", b=False, n=None, big=3, f=float("inf"))
exp.metrics("clash").log(v=1.5)
exp.metrics("clash").log(v="a string in a float column")  # refused by the writer, counted
exp.metrics().log(epoch=1)                                 # the default metric
try:
    exp.metrics("train").log(1, 2, 3)
except TypeError as exc:
    outcomes["three_positionals"] = type(exc).__name__
exp.run.complete()
try:
    m.log(loss=1.0)
except NotRunning as exc:
    outcomes["after_close"] = type(exc).__name__
for name in ("train", "mixed", "clash", "None", "order"):
    table = exp.metrics(name).read_table().drop_columns(["timestamp"])
    outcomes[name] = {"schema": str(table.schema), "rows": table.to_pylist()}
outcomes["refused"] = exp.writer_stats()["refused_rows"]
print(json.dumps(outcomes, default=repr))
"""


def _stored(tmp_path, pure: bool) -> dict:
    env = {**os.environ, "ONTHEFLY_PURE_PYTHON": "1" if pure else "0"}
    folder = tmp_path / ("pure" if pure else "default")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_c_extension_is_built_in_the_development_environment():
    if os.environ.get("ONTHEFLY_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("ONTHEFLY_PURE_PYTHON is set")
    assert hotpath.IMPLEMENTATION == "c", (
        f"metric logging runs in {hotpath.IMPLEMENTATION}: build the extension with "
        f"`.venv/bin/python -m pip install --no-deps --no-build-isolation -e .` (needs a C compiler)")


def test_c_and_python_hot_paths_store_the_same_rows_and_raise_the_same_errors(tmp_path):
    pure = _stored(tmp_path, pure=True)
    default = _stored(tmp_path, pure=False)
    assert pure.pop("implementation").startswith("python")
    assert "ONTHEFLY_PURE_PYTHON" not in default.pop("implementation")  # "c" once the extension is built
    assert default == pure
    assert pure["before_start"] == "NotRunning" and pure["after_close"] == "NotRunning"
    assert pure["three_positionals"] == "TypeError"
    assert len(pure["train"]["rows"]) == 41 and pure["train"]["rows"][-1] == {"loss": 0.5, "step": 101}
    first, second = pure["mixed"]["rows"]
    assert first["a"] == [0.0, 1.0, 2.0] and first["t"] == [1.0, 2.0] and first["l"] == [1, 2]
    assert second["a"][0] == 99.0 and first["d.x"] == 1 and second["d.x"] == 2 and first["big"] == float(2 ** 70)
    assert pure["clash"]["rows"] == [{"v": 1.5}] and pure["refused"] == 2  # and "x" in "order"
    assert pure["None"]["rows"] == [{"epoch": 1}]  # the unnamed metric is stored as "None", as in ML-Dash
    order = pure["order"]["rows"]
    assert [r["i"] for r in order] == [i for i in range(41) if i != 3]  # "x" in a float column: refused
    assert order[4] == {"v": 5.0, "i": 5, "extra": None} and order[17]["extra"] == 18
    assert order[9]["v"] == 1.0 and order[11]["v"] is None  # True among numbers is 1.0 (any batching)


ROWS = {
    "floats and ints": [{"loss": i / 7, "step": i} for i in range(50)],
    "an int beyond int64": [{"v": 1}, {"v": 2 ** 63}, {"v": 3}],
    "ints then a float": [{"v": 1}, {"v": 2.5}],
    "bools": [{"v": True}, {"v": False}],
    "a bool among ints": [{"v": 1}, {"v": True}],
    "nan, inf and None": [{"v": math.nan}, {"v": math.inf}, {"v": None}, {"v": -0.0}],
    "strings and lists": [{"s": "a", "l": [1.0]}, {"s": "b", "l": [2.0, 3.0]}],
    "a string in a float column": [{"v": 1.0}, {"v": "x"}, {"v": 2.0}],
    "different keys": [{"a": 1.0}, {"b": 2.0}],
    "same size, other keys": [{"a": 1.0, "b": 1}, {"a": 2.0, "c": 2}],
    "nested dicts": [{"m": {"depth": 4}}, {"m": {"depth": 5}}],
    "an explicit timestamp": [{"v": 1.0, "_ts": 5.0}, {"v": 2.0, "_ts": -1}],
    "a reserved field name": [{"v": 1.0, columns.ROW_KEY_PREFIX + "x": 1.0}],
}


@pytest.mark.parametrize("case", list(ROWS))
def test_c_column_encoding_equals_the_python_one(case, monkeypatch):
    """rows_to_table with the C columns (and, for plain numeric rows, its few-call table) against the
    Python path on the same queued rows."""
    if hotpath.columns is None:
        pytest.skip(f"metric logging runs in {hotpath.IMPLEMENTATION}")
    key = columns.metric_row_key("hot")
    times = [1.7e9 + i / 3 for i in range(len(ROWS[case]))]
    rows = [{**r, key: t} for r, t in zip(ROWS[case], times)]  # as queued: the call time under the row key
    fast = columns.rows_to_table(times, [dict(r) for r in rows], None, key)
    monkeypatch.setattr(columns, "fast_columns", None)
    slow = columns.rows_to_table(times, [dict(r) for r in rows], None, key)
    assert fast.table.schema == slow.table.schema
    assert repr(fast.table.to_pylist()) == repr(slow.table.to_pylist())  # NaN-aware, and tells -0.0 from 0.0
    assert (fast.refused, fast.reasons) == (slow.refused, slow.reasons)
    if case == "floats and ints":
        assert fast.table.schema.field("step").type == pa.int64()


def test_interleaved_metrics_with_the_same_fields_each_keep_their_own_rows(make_exp):
    """One write holding rows of two metrics of the same shape: the numeric fast path must not take them
    for one metric's batch (each row carries its own metric's row key)."""
    exp = make_exp(batch_size=1000, flush_interval=600)
    a, b = exp.metrics("a"), exp.metrics("b")
    for i in range(300):
        (a if i % 3 else b).log(v=float(i), step=i)
    exp.flush()
    steps_a = a.read_table().column("step").to_pylist()
    steps_b = b.read_table().column("step").to_pylist()
    assert steps_a == [i for i in range(300) if i % 3] and steps_b == list(range(0, 300, 3))
