"""A pre-configured experiment, ``dxp``, as in ML-Dash:

    from onthefly.tracking.auto_start import dxp
    with dxp.run:
        dxp.metrics("train").log(loss=0.5, step=0)

Its prefix is $ONTHEFLY_PREFIX, or "<user>/<current folder>/<date>/<time>"; it writes to the server in
$ONTHEFLY_DASH_URL when set (after ``onthefly login``, or with $ONTHEFLY_TOKEN: then <user> is the user the
server knows that token by), else to the local store ($ONTHEFLY_DASH_ROOT or ".dash"). Like any experiment
it is flushed and closed at interpreter exit if still running.
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
    """The prefix "<user>/<current folder>/<date>/<time>-<4 hex>". <user> is the user of the stored login for
    ``dash_url``, else $ONTHEFLY_USER or the login name (``dxp`` asks a server whose token has no login)."""
    owner = None
    if dash_url:
        from onthefly.tracking.credentials import user_for

        owner = user_for(dash_url)
    return f"{_segment(owner or names.default_owner())}/{_folder()}/{_stamp()}"


def _folder() -> str:
    return _segment(os.path.basename(os.getcwd()))


def _stamp() -> str:
    return f"{time.strftime('%Y-%m-%d/%H%M%S')}-{secrets.token_hex(2)}"


def _make_dxp() -> Experiment:
    url = os.environ.get("ONTHEFLY_DASH_URL") or None
    root = os.environ.get("ONTHEFLY_DASH_ROOT") or None
    prefix = os.environ.get("ONTHEFLY_PREFIX")
    if prefix or not url:
        return Experiment(prefix=prefix or default_prefix(), dash_url=url, dash_root=root)
    # Server mode: the owner is the user the server knows the token by (the stored login, else WhoAmI),
    # never a guess from $USER that the server would refuse.
    return Experiment(prefix=_stamp(), project=_folder(), dash_url=url, dash_root=root)


dxp = _make_dxp()

__all__ = ["dxp", "default_prefix"]
