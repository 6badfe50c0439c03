"""The deliberate differences not shown elsewhere in this suite, each run against both: ML-Dash's
behaviour (a documented defect or a missing guarantee) next to ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracking.compat.mdcompat import is_ours, start


def test_unknown_keyword_arguments_raise_in_ours(md):
    """ML-Dash swallows unknown keywords into RUN (``buffer_config=`` does nothing); ours raises."""
    if is_ours(md):
        with pytest.raises(TypeError):
            md.Experiment("alice/proj/run-1", dash_root=".dash", buffer_config={"size": 1})
    else:
        md.Experiment("alice/proj/run-1", dash_root=".dash", buffer_config={"size": 1})


def test_description_is_kept_as_the_readme_in_ours(md):
    exp = md.Experiment("alice/proj/run-1", dash_root=".dash", description="what this run tries")
    assert exp.readme == ("what this run tries" if is_ours(md) else None)


def test_run_decorator_works_in_ours(md):
    """ML-Dash documents ``@exp.run`` but it raises TypeError; ours runs the function inside the run."""
    exp = md.Experiment("alice/proj/decorated", dash_root=".dash")
    if not is_ours(md):
        with pytest.raises(TypeError):
            exp.run(lambda e: None)
        return

    @exp.run
    def train(e, n):
        e.params.set(n=n)
        return n

    assert train(3) == 3 and exp.status.value == "COMPLETED"


def test_reads_after_close_work_in_ours(md):
    exp = start(md)
    exp.params.set(a=1)
    exp.run.complete()
    if is_ours(md):
        assert exp.params.get() == {"a": 1}
    else:
        with pytest.raises(RuntimeError):
            exp.params.get()


def test_stats_before_a_flush_work_in_ours(md):
    with start(md).run as exp:
        exp.metrics("m").log(v=1)
        if is_ours(md):
            assert exp.metrics("m").stats()["totalDataPoints"] == "1"
        else:
            with pytest.raises(FileNotFoundError):
                exp.metrics("m").stats()


def test_metric_names_with_a_slash_work_in_ours(md):
    """ML-Dash's local flush fails on "train/loss" and closing raises; ours stores it."""
    exp = start(md)
    exp.metrics("train/loss").log(v=1)
    if is_ours(md):
        exp.run.complete()
        assert exp.metrics("train/loss").read()["data"][0]["data"]["v"] == 1
    else:
        with pytest.raises(md.NetworkError):
            exp.run.complete()


def test_status_is_recorded_locally_in_ours(md):
    with pytest.raises(KeyboardInterrupt):
        with md.Experiment("alice/proj/stopped", dash_root=".dash").run as exp:
            raise KeyboardInterrupt
    if is_ours(md):
        assert exp.status.value == "CANCELLED"
    else:
        stored = json.loads(open(".dash/alice/proj/stopped/experiment.json").read())
        assert "status" not in stored


def test_what_is_buffered_survives_the_end_of_the_script_in_ours(md, tmp_path):
    """A script that starts an experiment and never closes it: ML-Dash loses what it buffered; ours
    flushes and closes it at interpreter exit."""
    name = "onthefly.tracking" if is_ours(md) else "ml_dash"
    script = tmp_path / "forgets.py"
    script.write_text(textwrap.dedent(f"""
        from {name} import Experiment
        exp = Experiment("alice/proj/open", dash_root=".dash").run.start()
        for i in range(10):
            exp.metrics("m").log(v=i)
    """))
    env = {**os.environ, "ML_DASH_NO_VERSION_CHECK": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    exp = md.Experiment("alice/proj/open", dash_root=str(tmp_path / ".dash")).run.start()
    try:
        exp.flush()
        got = len(exp.metrics("m").read()["data"])
    finally:
        exp.run.complete()
    assert got == (10 if is_ours(md) else 0)


def test_file_update_keeps_tags_not_given_in_ours(md, monkeypatch):
    """ML-Dash's ``files(file_id=..., description=...).update()`` empties the tags (its builder passes []);
    ours changes only what is given."""
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "false")  # ML-Dash returns the id only unbuffered
    with start(md).run as exp:
        saved = exp.files("cfg", tags=["keep"], metadata={"k": 1}).save_text("hi", to="x.txt")
        got = exp.files(file_id=saved["id"], description="new").update()
    assert (got["description"], got["metadata"]) == ("new", {"k": 1})
    assert got["tags"] == (["keep"] if is_ours(md) else [])
