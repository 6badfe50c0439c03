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


def mount_small_disk(path, size: str = "2m") -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (a real full disk for tests); False where that is not
    allowed (not root). Unmount with ``unmount_small_disk``."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def unmount_small_disk(path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_disk(folder) -> None:
    """Take every free byte of the file system ``folder`` is on (a file named ``filler``)."""
    import errno

    with open(folder / "filler", "wb", buffering=0) as f:
        chunk = bytes(64 << 10)
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
