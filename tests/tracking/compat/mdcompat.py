"""Helpers of the ML-Dash compatibility suite (the fixtures are in conftest.py)."""

from __future__ import annotations

import re


def is_ours(md) -> bool:
    return md.__name__.startswith("onthefly")


def start(md, prefix: str = "alice/proj/run-1", **kwargs):
    """A started experiment under ./.dash (the caller completes it, usually through ``with``)."""
    kwargs.setdefault("dash_root", ".dash")
    return md.Experiment(prefix, **kwargs).run.start()


_NOISE = re.compile(r"^\[ML-Dash\]|^\s*$")


def console(text: str) -> list[str]:
    """Console lines without ML-Dash's own flush banners."""
    return [line for line in text.splitlines() if not _NOISE.search(line)]
