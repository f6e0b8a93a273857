"""Identifier values as the ids files hold them: plain JSON types, checked, spelled strictly.

Both directions share these rules: an export writes values pydicom gave (subclasses such as
``UID`` or ``MultiValue`` made plain, since a pickled subclass is a global our own loader
refuses), and an import checks every value a user may have edited. Error messages name
positions by number (``entity #3 item #1``), never by key, since keys are PatientIDs and UIDs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, MutableSequence
from typing import Any

from ..errors import IdentifiersError

__all__ = ["MAX_DEPTH", "plain_value", "checked_fields", "json_text"]

MAX_DEPTH = 32
"""Deepest nesting accepted inside one field value (sequence items as dicts in lists)."""


def plain_value(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain Python (str/int/float/bool/None/list/dict with str keys).

    Converts subclasses (pydicom's UID, IS, DSfloat, MultiValue) to their base types: a
    subclass would pickle as a global reference, which our own loader refuses.
    """
    if depth > MAX_DEPTH:
        raise IdentifiersError(f"{where}: value nested too deeply")
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if isinstance(value, float):
        return float(value)  # NaN and infinities too: see json_text
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                raise IdentifiersError(f"{where}: mapping keys must be strings")
            out[str(key)] = plain_value(sub, where, depth + 1)
        return out
    if isinstance(value, (list, tuple, MutableSequence)):  # MutableSequence: pydicom MultiValue
        return [plain_value(sub, where, depth + 1) for sub in value]
    raise IdentifiersError(f"{where}: value of type {type(value).__name__} is not JSON-safe")


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""Types :func:`plain_value` returns as they are (exactly these: subclasses are converted)."""
_LEAVES_OR_LIST = _LEAVES | {list}
_TEXT = frozenset({str})

_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_text(value: Any) -> str:
    """``value`` as strict JSON; a NaN or infinite float becomes the string "NaN", "Infinity"
    or "-Infinity".

    Why: a float element (FD/FL) may hold NaN, and deid's pickle keeps it as a float; JSON has
    no such number, and refusing it made one such file fail a whole run's export. The pickle
    beside the JSON keeps the float.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {key: _finite(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [_finite(sub) for sub in value]
    return value


def checked_fields(fields: Any, where: str) -> dict[str, Any]:
    if type(fields) is dict and set(map(type, fields)) <= _TEXT:
        # A parsed JSON item: its types are read in C, so a plain one is checked and copied
        # without a Python step per field (a quarter of checking a put --ids item).
        kinds = set(map(type, fields.values()))
        if kinds <= _LEAVES_OR_LIST:
            out = dict(fields)
            for name, value in out.items():
                if type(value) is list:
                    if not set(map(type, value)) <= _LEAVES:
                        break
                    out[name] = list(value)
            else:
                return out
    if not isinstance(fields, Mapping):
        raise IdentifiersError(f"{where}: expected a mapping of fields")
    out: dict[str, Any] = {}
    for n, (name, value) in enumerate(fields.items(), 1):
        if type(name) is not str:
            if not isinstance(name, str):
                raise IdentifiersError(f"{where} field #{n}: field name must be a string")
            name = str(name)
        # Most values are plain text or numbers, or lists of them: kept as they are, without
        # building the error context (the export of a million files spent half its time on it,
        # and so did loading a JSON --ids file).
        kind = type(value)
        if kind in _LEAVES:
            out[name] = value
        elif kind is list and all(type(sub) in _LEAVES for sub in value):
            out[name] = list(value)
        else:
            out[name] = plain_value(value, f"{where} field #{n}")
    return out
