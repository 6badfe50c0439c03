"""Fixtures for the tracking SDK: an isolated store folder and config folder per test, experiments that
are closed at teardown, and a real tracking server on port 0 with tokens for two users."""

from __future__ import annotations

import pytest

from onthefly.tracking import Experiment


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's login, store or writer settings."""
    monkeypatch.setenv("ONTHEFLY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("ONTHEFLY_USER", "tester")
    monkeypatch.setenv("ONTHEFLY_ECHO", "0")  # log lines echo to the console by default (as in ML-Dash)
    for name in ("ONTHEFLY_DASH_ROOT", "ONTHEFLY_DASH_URL", "ONTHEFLY_TOKEN", "ONTHEFLY_PREFIX",
                 "ONTHEFLY_FLUSH_INTERVAL", "ONTHEFLY_BATCH_SIZE", "ONTHEFLY_MAX_PENDING", "ONTHEFLY_ON_FULL",
                 "ONTHEFLY_UPLOAD_WORKERS", "ONTHEFLY_DURABLE", "ONTHEFLY_BUFFER_ENABLED", "ML_DASH_FLUSH_INTERVAL",
                 "ML_DASH_LOG_BATCH_SIZE", "ML_DASH_FILE_UPLOAD_WORKERS", "ML_DASH_BUFFER_ENABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dash(tmp_path):
    """The local store folder of this test."""
    return tmp_path / "dash"


@pytest.fixture
def make_exp(dash):
    """Factory: make_exp(prefix, **kwargs) -> a started Experiment in ``dash`` (closed at teardown)."""
    made: list[Experiment] = []

    def make(prefix: str = "alice/proj/run-1", start: bool = True, **kwargs) -> Experiment:
        kwargs.setdefault("dash_root", dash)
        kwargs.setdefault("durable", False)
        exp = Experiment(prefix=prefix, **kwargs)
        made.append(exp)
        if start:
            exp.run.start()
        return exp

    yield make
    for exp in made:
        if exp.is_running:
            exp.run.complete()


@pytest.fixture
def server(tmp_path):
    """A real tracking server on port 0 with tokens for alice and bob: (server, {user: token})."""
    from onthefly.tracking.server.host import start_tracking_server
    from onthefly.tracking.server.tokens import TokenStore

    root = tmp_path / "server-store"
    srv = start_tracking_server(root, port=0, durable=False)
    tokens = {user: TokenStore(root).create(user)[1] for user in ("alice", "bob")}
    yield srv, tokens
    srv.stop(grace=0.5)
