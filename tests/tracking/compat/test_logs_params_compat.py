"""Logs (the console echo) and parameters."""

from __future__ import annotations

import pytest

from tracking.compat.mdcompat import console, is_ours, start


def test_log_calls_echo_to_stdout_and_stderr(md, capsys):
    with start(md).run as exp:
        capsys.readouterr()
        assert exp.log("hello", level="info", metadata={"a": 1}, b=2) is None
        exp.log("plain")
        exp.logs.info("i", step=3)
        exp.logs.warn("w")
        exp.logs.debug("d", x=[1, 2])
        exp.logs.error("bad", code=7)
        exp.logs.fatal("dead")
        exp.log("loud", level="ERROR")
        out = capsys.readouterr()
    assert console(out.out) == ["[INFO] hello [a=1, b=2]", "[INFO] plain", "[INFO] i [step=3]", "[WARN] w",
                                "[DEBUG] d [x=[1, 2]]"]
    assert console(out.err) == ["[ERROR] bad [code=7]", "[FATAL] dead", "[ERROR] loud"]


def test_invalid_level_raises_value_error(md):
    with start(md).run as exp:
        with pytest.raises(ValueError):
            exp.log("x", level="nope")


def test_echo_can_be_switched_off_in_ours(md, capsys, monkeypatch):
    if not is_ours(md):
        pytest.skip("ML-Dash always echoes")
    with start(md, echo=False).run as exp:
        exp.logs.info("quiet")
        exp.logs.error("quiet")
    monkeypatch.setenv("ONTHEFLY_ECHO", "0")
    with start(md, "alice/proj/run-2").run as exp:
        exp.logs.info("quiet too")
    out = capsys.readouterr()
    assert "quiet" not in out.out + out.err


def test_params_flatten_merge_and_get(md):
    with start(md).run as exp:
        assert exp.params.get() == {}
        assert isinstance(exp.params.set(lr=0.1, model={"depth": 3}), md.ParametersBuilder)
        exp.params.set(model={"width": 8})
        exp.params.log(opt="adam")
        exp.params.set()  # nothing
        assert exp.params.get() == {"lr": 0.1, "model.depth": 3, "model.width": 8, "opt": "adam"}
        assert exp.params.get(flatten=False) == {"lr": 0.1, "model": {"depth": 3, "width": 8}, "opt": "adam"}
        exp.params.set(**{"model.depth": 4})
        assert exp.params.get()["model.depth"] == 4


def test_params_config_classes_become_dicts(md):
    class Args:
        batch_size = 64
        lr = 0.001
        _private = 1

        def method(self):
            return 0

    with start(md).run as exp:
        exp.params.set(Args=Args, seed=1)
        assert exp.params.get() == {"Args.batch_size": 64, "Args.lr": 0.001, "seed": 1}


def test_flatten_helpers(md):
    pb = md.ParametersBuilder
    assert pb.flatten_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert pb.unflatten_dict({"a.b": 1, "a.c.d": 2, "e": 3}) == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
