"""Test helpers importable from any test module (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LiveRun:
    """A Trainer.fit running on a background thread, with a connected client."""

    def __init__(self, trainer, fit_args: tuple, fit_kwargs: dict) -> None:
        from onthefly.client import connect

        self.trainer = trainer
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._fit, args=fit_args, kwargs=fit_kwargs, daemon=True)
        self.thread.start()
        assert trainer.ready.wait(30), "the trainer did not start"
        if self.error is not None:
            raise self.error
        self.client = connect(address=trainer.address, token=trainer.token)

    def _fit(self, *args, **kwargs) -> None:
        try:
            self.result = self.trainer.fit(*args, **kwargs)
        except BaseException as exc:  # reported to the test through .error
            self.error = exc

    def join(self, timeout: float = 60.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "fit did not return"
        if self.error is not None:
            raise self.error
        return self.result

    def close(self) -> None:
        self.client.close()
