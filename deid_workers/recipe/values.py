"""Action values: where they come from (var:/func:/deid_func:/literal) and how they fit a VR.

Spec §2.6 and §2.9. A value that cannot be found is reported as :data:`MISSING` rather than
None, so the engine can tell "no value" (REPLACE falls back to removing the field, a
deid-workers safety rule) from a func that legitimately returned something falsy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .funcs import FuncContext, call_builtin
from .notes import warn

__all__ = [
    "MISSING",
    "FLOAT_VRS",
    "INT_VRS",
    "BYTES_VRS",
    "resolve_value",
    "convert_value",
]

logger = logging.getLogger(__name__)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""A var:/func: value that is not there (or a func that returned None)."""

FLOAT_VRS = frozenset({"FL", "FD"})
INT_VRS = frozenset({"SL", "SS", "SV", "UL", "US", "UV"})
BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def resolve_value(
    value: str,
    *,
    lookup: Mapping[str, Any],
    field: Any,
    dataset: Any,
    ctx: FuncContext,
) -> Any:
    """The value an action line stands for, for one field (or the raw ADD field string).

    ``var:NAME`` reads the lookup (ids of this file and %values/%fields lists); ``func:NAME``
    calls ``lookup[NAME](dicom=, value=, field=, item=)`` as deid does; ``deid_func:NAME k=v``
    runs a built-in. Anything else is the literal text. Prefixes are case-sensitive, as in deid.
    """
    if value.startswith("var:"):
        name = value[4:]
        if name not in lookup or lookup[name] is None:
            return MISSING
        return lookup[name]
    if value.startswith("func:"):
        name = value[5:]
        func: Callable[..., Any] | None = lookup.get(name)
        if not callable(func):
            warn(logger, "no_func", "%s not found in item lookup.", name)
            return MISSING
        result = func(dicom=dataset, value=value, field=field, item=lookup)
        return MISSING if result is None else result
    if value.startswith("deid_func:"):
        name, _, extras = value[len("deid_func:"):].partition(" ")
        result = call_builtin(name, extras, field=field, ctx=ctx)
        return MISSING if result is None else result
    return value


def convert_value(vr: str, value: Any, label: str = "") -> tuple[bool, Any]:
    """(ok, value converted for pydicom): FL/FD float, int VRs int, binary VRs UTF-8 bytes.

    Strings only are converted; anything else (a func's int, a list) is passed through.
    """
    if vr == "SQ" and not isinstance(value, list):
        warn(logger, "unfit_vr", "Value is not a valid value for VR SQ field: %s. Field will be "
             "BLANKED.", label)
        return False, None
    try:
        if vr in FLOAT_VRS:
            return True, value if isinstance(value, (float, int, list)) else float(value)
        if vr in INT_VRS:
            return True, value if isinstance(value, (int, list)) else int(value)
        if vr in BYTES_VRS:
            return True, value if isinstance(value, (bytes, list)) else bytes(value, "utf-8")
    except (TypeError, ValueError):
        warn(logger, "unfit_vr", "Value is not a valid value for VR %s field: %s. Field will be "
             "BLANKED.", vr, label)
        return False, None
    return True, value
