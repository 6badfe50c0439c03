"""Shared fixtures: an isolated discovery directory per test and a live run in a background thread."""

from __future__ import annotations

import pytest

import onthefly  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT before grpc loads)
from support import LiveRun


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Each test gets its own discovery directory and session store, so runs never see each other and
    the checkout gets no ``.onthefly`` folder (tests of the default store unset ``ONTHEFLY_STORE``)."""
    path = tmp_path / "onthefly-run"
    monkeypatch.setenv("ONTHEFLY_RUNTIME_DIR", str(path))
    monkeypatch.setenv("ONTHEFLY_STORE", str(tmp_path / "onthefly-store"))
    return path


@pytest.fixture
def slow_pump(monkeypatch):
    """Trainers made in this test get a bus whose pump thread waits an hour between drains, so events
    move only when something drains the bus: a reader that must see every step published so far is
    tested for draining first, instead of racing the pump."""
    import functools

    from onthefly.trainer import trainer

    monkeypatch.setattr(trainer, "EventBus", functools.partial(trainer.EventBus, coalesce_seconds=3600))


@pytest.fixture
def live_run():
    """Factory: live_run(trainer, model, optimizer, loss_fn, loader, **fit_kwargs) -> LiveRun."""
    runs: list[LiveRun] = []

    def start(trainer, *fit_args, **fit_kwargs) -> LiveRun:
        run = LiveRun(trainer, fit_args, fit_kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.thread.is_alive() and run.trainer.run is not None:
            from onthefly.runtime.steering import Stop

            try:
                run.trainer.run.control.submit(Stop(skip_test=True))
            except Exception:
                pass
            run.thread.join(30)
        run.close()
