"""Experiments: construction, names, the run lifecycle, prefix templates and RuntimeError before start."""

from __future__ import annotations

import re

import pytest

from tracking.compat.mdcompat import is_ours, start


def test_public_names_exist(md):
    for name in ("Experiment", "RUN", "ml_dash_experiment", "OperationMode", "ParametersBuilder", "LogBuilder",
                 "LogLevel", "MlDashError", "ConfigurationError", "StorageError", "ExperimentError",
                 "NetworkError", "AuthenticationError"):
        assert hasattr(md, name), name
    assert issubclass(md.ConfigurationError, md.MlDashError) and issubclass(md.StorageError, md.MlDashError)


def test_names_are_parsed_from_the_prefix(md):
    exp = md.Experiment("alice/proj/sweep/run-7", dash_root=".dash")
    assert (exp.owner, exp.project, exp.name) == ("alice", "proj", "run-7")
    assert (exp.run.owner, exp.run.project, exp.run.name) == ("alice", "proj", "run-7")
    assert exp.run.prefix == exp.run._folder_path == "alice/proj/sweep/run-7"
    assert exp.mode == md.OperationMode.LOCAL and exp.mode.value == "local"
    exp.name = "display"
    assert exp.name == "display" and exp.run.prefix == "alice/proj/sweep/run-7"


def test_long_prefixes_keep_every_segment(md):
    prefix = "alice/proj/" + "/".join(f"seg{i}" for i in range(40))
    exp = md.Experiment(prefix, dash_root=".dash")
    assert exp.run.prefix == prefix and exp.name == "seg39"
    with exp.run as e:
        e.params.set(a=1)
        assert e.params.get() == {"a": 1}


@pytest.mark.parametrize("prop", ["params", "logs", "files", "metrics", "tracks"])
def test_builders_raise_runtime_error_before_start(md, prop):
    exp = md.Experiment("alice/proj/early", dash_root=".dash")
    with pytest.raises(RuntimeError, match="not started"):
        getattr(exp, prop)


def test_start_returns_the_experiment_and_is_idempotent(md):
    exp = md.Experiment("alice/proj/run-1", dash_root=".dash")
    assert exp.run.start() is exp
    assert exp.run.start() is exp
    exp.run.complete()
    exp.run.complete()  # a second complete does not raise
    assert exp.run.start() is exp  # reopening appends
    exp.params.set(b=2)
    exp.run.complete()


def test_with_returns_the_experiment_and_an_exception_propagates(md):
    exp = md.Experiment("alice/proj/run-1", dash_root=".dash")
    with exp.run as e:
        assert e is exp
    with pytest.raises(ZeroDivisionError):
        with md.Experiment("alice/proj/run-2", dash_root=".dash").run:
            1 / 0
    with pytest.raises(KeyboardInterrupt):
        with md.Experiment("alice/proj/run-3", dash_root=".dash").run:
            raise KeyboardInterrupt


def test_ml_dash_experiment_decorator_injects_the_experiment(md):
    seen = []

    @md.ml_dash_experiment("alice/proj/decorated", dash_root=".dash")
    def train(n, experiment=None):
        experiment.params.set(n=n)
        seen.append(experiment.params.get())
        return n * 2

    assert train(21) == 42
    assert seen == [{"n": 21}]


def test_prefix_setter_expands_templates_and_reparses(md):
    exp = md.Experiment("alice/proj/run1", dash_root=".dash")
    exp.run.prefix = "bob/other/{EXP.name}-v2"
    assert (exp.run.prefix, exp.owner, exp.project, exp.name) == ("bob/other/run1-v2", "bob", "other", "run1-v2")
    exp.run.prefix = "bob/other/{EXP.name}.{EXP.date}"
    assert re.fullmatch(r"bob/other/run1-v2\.\d{8}", exp.run.prefix)
    exp.run.prefix = "bob/other/{EXP.datetime_str}"
    assert re.fullmatch(r"bob/other/\d{8}\.\d{6}", exp.run.prefix)
    exp.run.prefix = "bob/other/{EXP.id}"
    assert re.fullmatch(r"bob/other/\d{15,19}", exp.run.prefix)
    assert exp.run.id is not None and str(exp.run.id) == exp.name


def test_prefix_cannot_change_once_started(md):
    exp = start(md)
    try:
        with pytest.raises(RuntimeError):
            exp.run.prefix = "alice/proj/other"
        assert exp.run.prefix == "alice/proj/run-1"
    finally:
        exp.run.complete()


def test_constructor_prefix_expands_templates(md):
    exp = md.Experiment("alice/proj/x/{EXP.date}", dash_root=".dash")
    assert re.fullmatch(r"alice/proj/x/\d{8}", exp.run.prefix)


def test_prefix_from_ml_dash_prefix_env_or_the_run_template(md, monkeypatch):
    exp = md.Experiment(dash_root=".dash")
    owner, project, *rest = exp.run.prefix.split("/")
    assert (owner, project) == ("tester", "scratch")  # "{user}/scratch/{now:%Y/%m-%d}/{path_stem}/{job_name}"
    assert re.fullmatch(r"\d{4}", rest[0]) and re.fullmatch(r"\d{2}-\d{2}", rest[1])
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{2}", rest[-2]) and re.fullmatch(r"\d{3}", rest[-1])
    assert md.RUN.prefix == "{project}/{now:%Y/%m-%d}/{path_stem}/{job_name}"
    assert md.RUN.project == "{user}/scratch"
    if is_ours(md):  # ML-Dash reads $ML_DASH_PREFIX once, at import; ours when the Experiment is made
        monkeypatch.setenv("ML_DASH_PREFIX", "envo/p/q")
        assert md.Experiment(dash_root=".dash").run.prefix == "envo/p/q"


def test_two_segment_prefix_differs_deliberately(md):
    """ML-Dash reads "a/b" as owner a, project b, name b; ours puts the owner in front (a project and a name,
    and in server mode the owner is the token's user): a deliberate difference."""
    exp = md.Experiment("proj/run", dash_root=".dash")
    if is_ours(md):
        assert (exp.owner, exp.project, exp.name) == ("tester", "proj", "run")
    else:
        assert (exp.owner, exp.project, exp.name) == ("proj", "run", "run")


def test_run_class_settings_shape_the_default_prefix(md):
    saved = (md.RUN.project, md.RUN.prefix)
    try:
        md.RUN.project = "alice/vision"
        assert md.Experiment(dash_root=".dash").run.prefix.startswith("alice/vision/")
        md.RUN.prefix = "{project}/fixed/{job_counter:03d}"
        first = md.Experiment(dash_root=".dash").run.prefix
        second = md.Experiment(dash_root=".dash").run.prefix
        assert first.startswith("alice/vision/fixed/") and re.fullmatch(r"\d{3}", first.rsplit("/", 1)[1])
        assert int(second.rsplit("/", 1)[1]) == int(first.rsplit("/", 1)[1]) + 1
    finally:
        md.RUN.project, md.RUN.prefix = saved


def test_before_start_writes_raise_and_closing_does_nothing(md):
    exp = md.Experiment("alice/proj/early", dash_root=".dash")
    for call in (lambda: exp.log("x"), lambda: exp.bindrs("b").list()):
        with pytest.raises(RuntimeError, match="not started"):
            call()
    assert exp.flush() is None and exp.run.complete() is None  # nothing to do yet
    with exp.run as e:  # and it can still be started
        e.params.set(a=1)


def test_local_path_is_a_deprecated_name_of_dash_root(md, tmp_path):
    with pytest.warns(DeprecationWarning):
        exp = md.Experiment("alice/proj/old", local_path=str(tmp_path / "old"))
    with exp.run as e:
        e.params.set(a=1)
    assert (tmp_path / "old" / "alice" / "proj" / "old").is_dir()


def test_unset_readme_tags_metadata_and_id_are_none(md):
    exp = md.Experiment("alice/proj/bare", dash_root=".dash")
    assert (exp.readme, exp.tags, exp.metadata, exp.id) == (None, None, None, None)
    with exp.run as e:
        assert (e.readme, e.tags, e.metadata, e.id) == (None, None, None, None)
        e.params.set(a=1)
    given = md.Experiment("alice/proj/given", dash_root=".dash", readme="r", tags=["t"], metadata={"k": 1})
    assert (given.readme, given.tags, given.metadata, given.id) == ("r", ["t"], {"k": 1}, None)
