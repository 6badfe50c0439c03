"""A pre-configured experiment, ``dxp``, as in ML-Dash:

    from onthefly.tracking.auto_start import dxp
    with dxp.run:
        dxp.metrics("train").log(loss=0.5, step=0)

Its prefix is $ONTHEFLY_PREFIX, or "<user>/<current folder>/<date>/<time>"; it writes to the server in
$ONTHEFLY_DASH_URL when set (after ``onthefly login``), else to the local store ($ONTHEFLY_DASH_ROOT or
".dash"). Like any experiment it is flushed and closed at interpreter exit if still running.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from onthefly.tracking import names
from onthefly.tracking.experiment import Experiment


def _segment(text: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "-", text).strip("-.") or "default"
    return cleaned[: names.MAX_SEGMENT]


def default_prefix(dash_url: str | None = None) -> str:
    owner = None
    if dash_url:
        from onthefly.tracking.credentials import user_for

        owner = user_for(dash_url)
    owner = owner or names.default_owner()
    stamp = time.strftime("%Y-%m-%d/%H%M%S")
    return f"{_segment(owner)}/{_segment(os.path.basename(os.getcwd()))}/{stamp}-{secrets.token_hex(2)}"


_url = os.environ.get("ONTHEFLY_DASH_URL") or None
dxp = Experiment(prefix=os.environ.get("ONTHEFLY_PREFIX") or default_prefix(_url), dash_url=_url,
                 dash_root=os.environ.get("ONTHEFLY_DASH_ROOT") or None)

__all__ = ["dxp", "default_prefix"]
