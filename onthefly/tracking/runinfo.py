"""ML-Dash's ``RUN``: the default prefix template and the ``{EXP.name}``-style templates of prefixes.

    from onthefly.tracking import RUN, Experiment
    RUN.project = "alice/vision"             # the default prefix becomes alice/vision/<date>/<script>/<time>
    exp = Experiment()                       # prefix: $ML_DASH_PREFIX, else RUN.prefix expanded
    exp.run.prefix = "alice/vision/{EXP.name}-v2"   # allowed until the experiment is started

A prefix may use ``{EXP.<attr>}`` (``name``, ``id`` (a new snowflake id), ``date`` (YYYYMMDD),
``datetime_str`` (YYYYMMDD.HHMMSS), ``owner``, ``project`` or any other attribute of ``exp.run``) and
``str.format`` fields of RUN (``{user}``, ``{project}``, ``{now:%Y-%m-%d}``, ``{path_stem}``,
``{job_name}``, ``{job_counter}``). Unlike ML-Dash, ``path_stem`` is the running script's path under its
project root (never a path inside the installed package).
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import sys
import threading
import time
from datetime import datetime
from typing import Any

from onthefly.tracking.errors import InvalidArgument

DEFAULT_PREFIX = "{project}/{now:%Y/%m-%d}/{path_stem}/{job_name}"
PROJECT_ROOT_FILES = ("pyproject.toml", "requirements.txt", "setup.py", "setup.cfg")
_EXP_FIELD = re.compile(r"\{EXP\.(\w+)\}")
_COUNTER_LOCK = threading.Lock()


class RUN:
    """Class-level defaults for experiments created without a prefix (ML-Dash's ``RUN``). Set its
    attributes before creating the Experiment; ``RUN.prefix`` is the template used when $ML_DASH_PREFIX
    (or $ONTHEFLY_PREFIX) is not set."""

    user: str | None = None  # None: $ML_DASH_USER, $ONTHEFLY_USER, $USER, then the login name
    project = "{user}/scratch"
    prefix = DEFAULT_PREFIX
    readme = None
    now = datetime.now()
    job_counter = 0
    job_name = "{now:%H.%M.%S}/{job_counter:03d}"
    project_root: str | None = None
    path_stem: str | None = None

    @classmethod
    def date(cls) -> str:
        return cls.now.strftime("%Y%m%d")

    @classmethod
    def datetime_str(cls) -> str:
        return cls.now.strftime("%Y%m%d.%H%M%S")


def current_user() -> str:
    return (RUN.user or os.environ.get("ML_DASH_USER") or os.environ.get("ONTHEFLY_USER")
            or os.environ.get("USER") or getpass.getuser())


def snowflake_id() -> int:
    """A 63-bit id that sorts by creation time: milliseconds since 2020 and 22 random bits."""
    return ((int(time.time() * 1000) - 1_577_836_800_000) << 22) | secrets.randbits(22)


def _project_root(start: str) -> str:
    folder = os.path.dirname(os.path.abspath(start)) if os.path.isfile(start) else os.path.abspath(start)
    probe = folder
    while True:
        if any(os.path.exists(os.path.join(probe, f)) for f in PROJECT_ROOT_FILES):
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return os.getcwd()
        probe = parent


def path_stem() -> str:
    """The running script's path without extension, relative to its project root (the nearest folder
    above it holding pyproject.toml, requirements.txt, setup.py or setup.cfg; else the current folder).
    Segments starting with '.' get a '_' in front so that they are valid prefix segments."""
    if RUN.path_stem:
        return RUN.path_stem
    entry = getattr(sys.modules.get("__main__"), "__file__", None) or (sys.argv[0] if sys.argv else "")
    if not entry or not os.path.exists(entry):
        return "interactive"
    root = RUN.project_root or _project_root(entry)
    rel = os.path.relpath(os.path.splitext(os.path.abspath(entry))[0], root)
    if rel.startswith(".."):
        rel = os.path.basename(rel)
    parts = [("_" + p if p.startswith(".") else p) for p in rel.replace(os.sep, "/").split("/") if p]
    return "/".join(parts) or "interactive"


def _format(template: str, fields: dict[str, Any]) -> str:
    for _ in range(10):
        if "{" not in template:
            break
        try:
            template = template.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"prefix template {template!r} cannot be expanded ({type(exc).__name__}: "
                                  f"{exc}); known fields: {', '.join(sorted(fields))}") from None
    return template


def default_prefix() -> str:
    """$ML_DASH_PREFIX or $ONTHEFLY_PREFIX when set, else ``RUN.prefix`` expanded (a new job counter)."""
    env = os.environ.get("ML_DASH_PREFIX") or os.environ.get("ONTHEFLY_PREFIX")
    with _COUNTER_LOCK:  # ML-Dash's first experiment of a process gets job_counter 0
        counter = RUN.job_counter
        RUN.job_counter += 1
    if env and RUN.prefix == DEFAULT_PREFIX:
        return env
    fields = {"user": current_user(), "now": RUN.now, "job_counter": counter, "date": RUN.date(),
              "datetime_str": RUN.datetime_str()}
    fields["project"] = _format(RUN.project, fields)
    fields["path_stem"] = path_stem()
    fields["job_name"] = _format(RUN.job_name, fields)
    return _format(RUN.prefix, fields)


def expand_exp(template: str, lookup) -> str:
    """Replace each ``{EXP.attr}`` with ``lookup(attr)`` (an unknown attribute raises InvalidArgument)."""
    def one(match: re.Match) -> str:
        value = lookup(match.group(1))
        if value is None:
            raise InvalidArgument(f"prefix template {template!r}: EXP.{match.group(1)} has no value")
        return str(value)

    return _EXP_FIELD.sub(one, template)


def expand_fields(template: str) -> str:
    """Expand RUN's ``str.format`` fields (``{user}``, ``{now:%Y}``, ...) left in a prefix."""
    if "{" not in template:
        return template
    fields = {"user": current_user(), "now": RUN.now, "job_counter": RUN.job_counter, "date": RUN.date(),
              "datetime_str": RUN.datetime_str()}
    fields["project"] = _format(RUN.project, fields)
    if "{path_stem" in template:
        fields["path_stem"] = path_stem()
    fields["job_name"] = _format(RUN.job_name, fields)
    return _format(template, fields)
