"""Parameters: ``exp.params.set(lr=1e-3, model={"depth": 4})`` stores {"lr": 0.001, "model.depth": 4}.

``set`` merges into what is stored (a key replaces its whole subtree); ``get()`` returns the flat dict,
``get(flatten=False)`` the nested one. Values must be JSON-like (numbers, strings, booleans, None, lists,
dicts; numpy values are converted); non-finite floats round-trip exactly.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from onthefly.tracking import flat, jsonsafe
from onthefly.tracking.errors import InvalidArgument

if TYPE_CHECKING:
    from onthefly.tracking.experiment import Experiment


def _classes_as_dicts(data: dict) -> dict:
    """A config class given as a value (``params.set(Args=Args)``) becomes the dict of its public,
    non-callable class attributes, as in ML-Dash (types, properties and other descriptors are left out)."""
    out = {}
    for key, value in data.items():
        if inspect.isclass(value):
            value = {k: v for k, v in vars(value).items()
                     if not k.startswith("_") and not callable(v) and not isinstance(v, type)
                     and not hasattr(v, "__get__")}
        out[key] = value
    return out


class ParamsBuilder:
    """``exp.params``."""

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp

    def set(self, _values: dict | None = None, /, **kwargs) -> "ParamsBuilder":
        """Merge parameters (nested dicts become dotted keys); written before this returns. Returns self."""
        self._exp._require_running("params.set()")
        data = dict(_values or {})
        data.update(kwargs)
        values = flat.flatten(_classes_as_dicts(data))
        if not values:
            return self
        try:
            jsonsafe.plain(values, "params")
        except TypeError as exc:
            raise InvalidArgument(str(exc)) from None
        self._exp._backend.set_params(self._exp.prefix, values)
        return self

    log = set
    update = set

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The stored parameters, flat ({"model.depth": 4}) or nested ({"model": {"depth": 4}})."""
        self._exp._require_started("params.get()")
        stored = self._exp._backend_for_read().get_params(self._exp.prefix)
        return stored if flatten else flat.unflatten(stored)

    @staticmethod
    def flatten_dict(d: dict, parent_key: str = "", sep: str = ".") -> dict:
        if sep != flat.SEP:
            raise InvalidArgument("only '.' is supported as separator")
        return flat.flatten(d, parent_key)

    @staticmethod
    def unflatten_dict(d: dict, sep: str = ".") -> dict:
        if sep != flat.SEP:
            raise InvalidArgument("only '.' is supported as separator")
        return flat.unflatten(d)
