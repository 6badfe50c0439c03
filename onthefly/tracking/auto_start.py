"""``dxp``: a ready-made experiment, as in ML-Dash, started the first time it is used:

    from onthefly.tracking.auto_start import dxp
    dxp.params.set(lr=0.1)                       # starts it
    dxp.metrics("train").log(loss=0.5, step=0)
    # or, as ML-Dash's code has it: with dxp.run: ...  /  dxp.run.start()

Its prefix is $ML_DASH_PREFIX or $ONTHEFLY_PREFIX, else ML-Dash's template
"<user>/scratch/<YYYY>/<MM-DD>/<script path>/<HH.MM.SS>/<counter>" (``RUN``). It writes to the local store
($ONTHEFLY_DASH_ROOT or ".dash"), or to the server in $ONTHEFLY_DASH_URL when set (after ``onthefly login``,
or with $ONTHEFLY_TOKEN: then the owner is the user the server knows that token by). Like any experiment
it is flushed and closed at interpreter exit if still running. Unlike ML-Dash's, it never goes to a cloud
service and never makes a network call at import.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from onthefly.tracking import names, runinfo
from onthefly.tracking.experiment import Experiment


class AutoStartExperiment(Experiment):
    """An Experiment that starts itself the first time one of its builders or ``log`` is used."""

    def _auto(self) -> None:
        if self._state == "new":
            self._start()

    @property
    def params(self):
        self._auto()
        return super().params

    @property
    def metrics(self):
        self._auto()
        return super().metrics

    @property
    def tracks(self):
        self._auto()
        return super().tracks

    @property
    def logs(self):
        self._auto()
        return super().logs

    @property
    def files(self):
        self._auto()
        return super().files

    def log(self, *args, **kwargs):
        self._auto()
        return super().log(*args, **kwargs)


def _segment(text: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "-", text).strip("-.") or "default"
    return cleaned[: names.MAX_SEGMENT]


def _stamp() -> str:
    return f"{time.strftime('%Y-%m-%d/%H%M%S')}-{secrets.token_hex(2)}"


def _make_dxp() -> Experiment:
    url = os.environ.get("ONTHEFLY_DASH_URL") or None
    root = os.environ.get("ONTHEFLY_DASH_ROOT") or None
    if not url:
        return AutoStartExperiment(prefix=runinfo.default_prefix(), dash_root=root)
    prefix = os.environ.get("ML_DASH_PREFIX") or os.environ.get("ONTHEFLY_PREFIX")
    if prefix:
        return AutoStartExperiment(prefix=prefix, dash_url=url)
    # Server mode: the owner is the user the server knows the token by (the stored login, else WhoAmI),
    # never a guess from $USER that the server would refuse.
    return AutoStartExperiment(prefix=_stamp(), project=_segment(os.path.basename(os.getcwd())), dash_url=url)


dxp = _make_dxp()

__all__ = ["AutoStartExperiment", "dxp"]
