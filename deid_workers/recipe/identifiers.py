"""Identifiers of one dataset, as deid's client exported them (spec Part A §3), JSON-safe.

``get_identifiers`` returns the flat ``{keyword: value}`` of one file; the pipeline nests it as
``ids[entity][item]``. Only top-level elements with a keyword and a non-empty value are kept
(the 2017 client's choice); pixel data, other binary values and sequences are left out because
they are not identifiers a recipe can reuse through ``var:`` and would not survive JSON.
Values become plain types: numbers (US/SS/UL/SL/SV/UV/FL/FD/IS/DS) int or float, everything
else (dates, times, person names, UIDs, tags) str, multi-valued elements lists of those.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

__all__ = ["get_identifiers", "entity_item"]

_INT_VRS = frozenset({"US", "SS", "UL", "SL", "SV", "UV", "IS"})
_FLOAT_VRS = frozenset({"FL", "FD", "DS"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

Plain = str | int | float | list[Any]


def _plain(value: Any, vr: str) -> Any:
    if vr in _INT_VRS:
        return int(value)
    if vr in _FLOAT_VRS:
        return float(value)
    return str(value)


def get_identifiers(ds: Dataset) -> dict[str, Plain]:
    """``{keyword: value}`` of the top-level, non-empty, non-binary, non-sequence elements."""
    out: dict[str, Plain] = {}
    for element in ds:
        keyword = element.keyword
        if not keyword or keyword == "PixelData" or element.VR in _BINARY_VRS or element.VR == "SQ":
            continue
        value = element.value
        if value is None or value == "" or isinstance(value, (bytes, bytearray, Sequence)):
            continue
        try:
            if isinstance(value, (list, MultiValue)):
                items = [_plain(v, element.VR) for v in value if v not in (None, "")]
                if not items:
                    continue
                out[keyword] = items
            else:
                out[keyword] = _plain(value, element.VR)
        except (TypeError, ValueError):
            out[keyword] = str(value)
    return out


def entity_item(
    ds: Dataset, entity_field: str = "PatientID", item_field: str = "SOPInstanceUID"
) -> tuple[str | None, str | None]:
    """The (entity, item) keys of a file's identifiers; None where the element is absent/empty."""

    def one(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        return str(value)

    return one(entity_field), one(item_field)
