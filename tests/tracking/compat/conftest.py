"""The ML-Dash compatibility suite: each test runs the same script against the real ``ml_dash`` 0.11.0 and
against ``onthefly.tracking`` (the ``md`` fixture gives the module) and compares what the public API
returns. Local mode only; ML-Dash's version check (a network call at import) is switched off."""

from __future__ import annotations

import importlib
import os
import re

import pytest

os.environ.setdefault("ML_DASH_NO_VERSION_CHECK", "1")

IMPLEMENTATIONS = ("ml_dash", "onthefly")


def _module(name: str):
    if name == "ml_dash":
        return pytest.importorskip("ml_dash", reason="ml-dash==0.11.0 is not installed (requirements-dev.txt)")
    return importlib.import_module("onthefly.tracking")


@pytest.fixture(params=IMPLEMENTATIONS)
def md(request, tmp_path, monkeypatch):
    """The module under test (``ml_dash`` or ``onthefly.tracking``), run from an empty folder."""
    for name in ("ML_DASH_PREFIX", "ML_DASH_USER", "ML_DASH_BUFFER_ENABLED", "ONTHEFLY_ECHO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "tester")
    monkeypatch.chdir(tmp_path)
    return _module(request.param)


@pytest.fixture
def both():
    """Both modules, for tests that compare two results side by side."""
    return {name: _module(name) for name in IMPLEMENTATIONS}


@pytest.fixture
def unbuffered(monkeypatch):
    """ML-Dash returns full file metadata only with buffering off (read when an Experiment is made)."""
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", "false")
