"""The rest of ML-Dash's public names that make sense locally: ``OperationMode``, ``LogLevel`` and the
``ml_dash_experiment`` decorator (``RUN`` is in ``runinfo``, the exceptions in ``errors``)."""

from __future__ import annotations

import enum
import functools
from typing import Any, Callable

from onthefly.tracking.logs import check_level


class OperationMode(enum.Enum):
    """Where an experiment writes: LOCAL (a store folder) or REMOTE (an ``onthefly serve`` server)."""

    LOCAL = "local"
    REMOTE = "remote"
    HYBRID = "hybrid"  # ML-Dash's local + remote; never chosen by onthefly (one store per experiment)


class LogLevel(enum.Enum):
    """The five log levels."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    DEBUG = "debug"
    FATAL = "fatal"

    @classmethod
    def validate(cls, level: str) -> str:
        """The level's normalized name; ValueError for anything else (case-insensitive)."""
        return check_level(level)


def ml_dash_experiment(prefix: str | None = None, **kwargs: Any) -> Callable:
    """Decorator: run the function inside ``with Experiment(prefix, **kwargs).run`` and pass the
    experiment as the keyword argument ``experiment``."""
    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **func_kwargs):
            from onthefly.tracking.experiment import Experiment

            with Experiment(prefix, **kwargs).run as experiment:
                func_kwargs["experiment"] = experiment
                return func(*args, **func_kwargs)

        return wrapper

    return decorator
