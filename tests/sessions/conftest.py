"""Every sessions test gets its own store directory (through $ONTHEFLY_STORE)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("ONTHEFLY_STORE", str(path))
    return path


@pytest.fixture(autouse=True)
def collect_loader_workers():
    """Shut down a test's DataLoader workers (persistent ones live in their iterator) when it ends,
    not whenever a later test's allocation happens to trigger garbage collection: joining them then
    once stalled a later run's start past its 30 s deadline on a loaded machine."""
    yield
    import gc

    gc.collect()
