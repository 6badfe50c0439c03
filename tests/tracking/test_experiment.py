"""Experiments: the three usage styles, prefix hierarchy and upsert, lifecycle, calls before start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from onthefly.tracking import Experiment, InvalidArgument, NotRunning, Status
from onthefly.tracking.store import LocalStore


def _record(dash, prefix):
    return LocalStore(dash).get_experiment(prefix)


def test_context_manager_records_running_then_completed(dash):
    with Experiment(prefix="vision-team/resnet/run-1", dash_root=dash, tags=["a"], readme="first",
                    metadata={"gpu": "A100"}).run as exp:
        assert exp.status is Status.RUNNING
        assert _record(dash, "vision-team/resnet/run-1").status is Status.RUNNING
        exp.metrics("train").log(loss=0.5, step=0)
    record = _record(dash, "vision-team/resnet/run-1")
    assert record.status is Status.COMPLETED and record.error == ""
    assert (record.owner, record.tags, record.readme, record.metadata) == ("vision-team", ["a"], "first",
                                                                           {"gpu": "A100"})
    assert [h["status"] for h in record.history] == ["RUNNING", "COMPLETED"]
    assert (exp.owner, exp.project, exp.name) == ("vision-team", "resnet", "run-1")


def test_direct_start_and_complete(dash):
    exp = Experiment(prefix="alice/proj/direct", dash_root=dash)
    assert exp.run.start() is exp
    exp.log("hello")
    exp.run.complete()
    assert _record(dash, "alice/proj/direct").status is Status.COMPLETED
    assert exp.logs.read()[0]["message"] == "hello"  # reading still works after closing


def test_decorator_style(dash):
    exp = Experiment(prefix="alice/proj/decorated", dash_root=dash)

    @exp.run
    def train(e, n):
        e.metrics("m").log(v=n)
        return n * 2

    assert train(21) == 42
    assert exp.status is Status.COMPLETED
    assert exp.metrics("m").read()["data"][0]["data"]["v"] == 21


def test_auto_start_dxp_singleton(tmp_path):
    script = ("from onthefly.tracking.auto_start import dxp\n"
              "with dxp.run:\n"
              "    dxp.metrics('train').log(loss=0.5, step=0)\n"
              "    dxp.params.set(lr=0.1)\n"
              "print(dxp.prefix)\n")
    env = {**os.environ, "ONTHEFLY_DASH_ROOT": str(tmp_path / "d"), "ONTHEFLY_USER": "carol"}
    env.pop("ONTHEFLY_PREFIX", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    prefix = out.stdout.strip()
    assert prefix.startswith("carol/scratch/")  # ML-Dash's "{user}/scratch/{now:%Y/%m-%d}/{path_stem}/{job_name}"
    store = LocalStore(tmp_path / "d")
    assert store.get_experiment(prefix).status is Status.COMPLETED
    assert store.get_params(prefix) == {"lr": 0.1}
    # $ONTHEFLY_PREFIX names it
    env["ONTHEFLY_PREFIX"] = "carol/fixed/name"
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "carol/fixed/name", out.stderr


def test_prefix_hierarchy_is_created_and_short_prefixes_get_an_owner(dash):
    with Experiment(prefix="team/a/b/c/deep-run", dash_root=dash).run:
        pass
    assert (dash / "team" / "a" / "b" / "c" / "deep-run" / "experiment.json").is_file()
    exp = Experiment(prefix="proj/short", dash_root=dash)
    assert exp.prefix == "tester/proj/short"  # $ONTHEFLY_USER in front
    assert Experiment(prefix="run-9", project="vision", dash_root=dash).prefix == "tester/vision/run-9"
    assert [r.prefix for r in LocalStore(dash).list_experiments()] == ["team/a/b/c/deep-run"]


@pytest.mark.parametrize("bad", ["", "only", "a/../b", "a/.hidden/c", "a//b/c", "a/b\\c/d"])
def test_bad_prefixes_are_refused_clearly(dash, bad):
    with pytest.raises(InvalidArgument) as info:
        Experiment(prefix=bad, dash_root=dash)
    assert "prefix" in str(info.value)


def test_reopening_a_prefix_updates_it_never_duplicates(dash):
    with Experiment(prefix="alice/proj/same", dash_root=dash, tags=["v1"], metadata={"a": 1}).run as exp:
        exp.metrics("loss").log(v=1.0)
        exp.params.set(lr=0.1)
    with Experiment(prefix="alice/proj/same", dash_root=dash, tags=["v2"], readme="again",
                    metadata={"b": 2}).run as exp:
        exp.metrics("loss").log(v=2.0)
        exp.params.set(wd=0.01)
    records = LocalStore(dash).list_experiments()
    assert len(records) == 1
    record = records[0]
    assert record.tags == ["v2"] and record.readme == "again" and record.metadata == {"a": 1, "b": 2}
    assert [h["note"] for h in record.history if h["status"] == "RUNNING"] == ["created", "reopened"]
    assert [row["data"]["v"] for row in exp.metrics("loss").read()["data"]] == [1.0, 2.0]
    assert exp.params.get() == {"lr": 0.1, "wd": 0.01}


def test_exception_records_failed_with_its_text(dash):
    with pytest.raises(ValueError):
        with Experiment(prefix="alice/proj/fails", dash_root=dash).run as exp:
            exp.log("about to fail")
            raise ValueError("loss went NaN at step 12")
    record = _record(dash, "alice/proj/fails")
    assert record.status is Status.FAILED
    assert record.error == "ValueError: loss went NaN at step 12"
    assert exp.logs.read()[0]["message"] == "about to fail"  # flushed before the status was written


def test_keyboard_interrupt_records_cancelled(dash):
    with pytest.raises(KeyboardInterrupt):
        with Experiment(prefix="alice/proj/interrupted", dash_root=dash).run as exp:
            exp.metrics("m").log(v=1)
            raise KeyboardInterrupt
    assert _record(dash, "alice/proj/interrupted").status is Status.CANCELLED
    assert exp.metrics("m").read()["totalDataPoints"] == 1


def test_explicit_fail_and_cancel(dash):
    exp = Experiment(prefix="alice/proj/f", dash_root=dash).run.start()
    exp.run.fail(RuntimeError("disk full"))
    assert _record(dash, "alice/proj/f").error == "RuntimeError: disk full"
    exp = Experiment(prefix="alice/proj/c", dash_root=dash).run.start()
    exp.run.cancel("user asked")
    record = _record(dash, "alice/proj/c")
    assert (record.status, record.error) == (Status.CANCELLED, "user asked")


def test_any_call_before_start_raises_a_clear_runtime_error(dash):
    exp = Experiment(prefix="alice/proj/early", dash_root=dash)
    calls = [lambda: exp.log("x"), lambda: exp.params.set(a=1), lambda: exp.params.get(),
             lambda: exp.metrics("m"), lambda: exp.tracks("t"), lambda: exp.files("f").save_text("x", to="a.txt"),
             lambda: exp.files.list()]
    for call in calls:
        with pytest.raises(RuntimeError) as info:
            call()
        assert isinstance(info.value, NotRunning)
        assert "has not been started" in str(info.value) and "exp.run.start()" in str(info.value)
    exp.flush()  # nothing to do before start, as in ML-Dash
    exp.run.complete()
    assert not dash.exists()  # nothing was written


def test_writing_after_close_raises_and_names_the_state(make_exp):
    exp = make_exp()
    metric = exp.metrics("m")
    exp.run.complete()
    with pytest.raises(NotRunning, match="closed"):
        metric.log(v=1)
    with pytest.raises(NotRunning):
        exp.params.set(a=1)
    exp.run.start()  # a closed experiment can be started again (upsert)
    metric.log(v=2)
    exp.run.complete()
    assert [r["data"]["v"] for r in metric.read()["data"]] == [2]


def test_experiment_json_is_standard_json(dash):
    with Experiment(prefix="alice/proj/meta", dash_root=dash, metadata={"nan": float("nan"),
                                                                         "inf": float("-inf")}).run:
        pass
    text = (dash / "alice/proj/meta/experiment.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in experiment.json"))
    record = _record(dash, "alice/proj/meta")
    assert record.metadata["inf"] == float("-inf") and record.metadata["nan"] != record.metadata["nan"]


def test_another_tools_experiment_file_is_refused_and_left_alone(dash):
    folder = dash / "alice" / "proj" / "theirs"
    folder.mkdir(parents=True)
    foreign = '{"name": "theirs", "created": "2026-01-01"}'  # e.g. an ML-Dash experiment.json
    (folder / "experiment.json").write_text(foreign)
    with pytest.raises(RuntimeError, match="not an OnTheFly experiment record"):
        Experiment(prefix="alice/proj/theirs", dash_root=str(dash)).run.start()
    assert (folder / "experiment.json").read_text() == foreign
    assert [r.prefix for r in LocalStore(dash).list_experiments()] == []
