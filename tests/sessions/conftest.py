"""Every sessions test gets its own store directory (through $ONTHEFLY_STORE)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("ONTHEFLY_STORE", str(path))
    return path
