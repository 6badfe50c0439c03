"""Fixtures for the Lightning tests: a Lightning fit with OnTheFly attached, on a background thread."""

from __future__ import annotations

import threading

import pytest

from onthefly.client import connect
from onthefly.integrations.lightning.demo import quiet_trainer_kwargs
from onthefly.lightning import attach_lightning


class LitRun:
    """``trainer.fit(model, *loaders)`` on a thread, OnTheFly attached (port 0), a client connected."""

    def __init__(self, root: str, model, loaders: tuple, trainer_kwargs: dict, attach_kwargs: dict) -> None:
        import lightning.pytorch as L

        self.model = model
        self.trainer = L.Trainer(**quiet_trainer_kwargs(root, **trainer_kwargs))
        attach_kwargs.setdefault("start_paused", True)
        self.callback = attach_lightning(trainer=self.trainer, model=model, project="lit", run_name="test", port=0,
                                         verbose=False, **attach_kwargs)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._fit, args=loaders, daemon=True)
        self.thread.start()
        assert self.callback.ready.wait(60), "the Lightning run did not start"
        if self.error is not None:
            raise self.error
        self.client = connect(address=self.callback.address, token=self.callback.token)

    def _fit(self, *loaders) -> None:
        try:
            self.trainer.fit(self.model, *loaders)
        except BaseException as exc:  # reported to the test through .error
            self.error = exc

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "fit did not return"
        if self.error is not None:
            raise self.error


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch):
    """Every Lightning test's session store lives in its own folder (through $ONTHEFLY_STORE)."""
    path = tmp_path / "store"
    monkeypatch.setenv("ONTHEFLY_STORE", str(path))
    return path


@pytest.fixture
def lit_run(tmp_path):
    """Factory: lit_run(model, *loaders, trainer_kwargs={...}, **attach_kwargs) -> LitRun."""
    runs: list[LitRun] = []

    def start(model, *loaders, trainer_kwargs=None, **attach_kwargs) -> LitRun:
        run = LitRun(str(tmp_path), model, loaders, dict(trainer_kwargs or {}), attach_kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.thread.is_alive() and run.callback.run is not None:
            from onthefly.runtime.steering import Stop

            try:
                run.callback.run.control.submit(Stop())
            except Exception:
                pass
            run.thread.join(30)
        run.client.close()
