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

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .values import BYTES_VRS as _BINARY_VRS

__all__ = ["get_identifiers", "entity_item"]

_INT_VRS = frozenset({"US", "SS", "UL", "SL", "SV", "UV", "IS"})
_FLOAT_VRS = frozenset({"FL", "FD", "DS"})

Plain = str | int | float | list[Any]


def _plain(value: Any, vr: str) -> Any:
    if vr in _INT_VRS:
        return int(value)
    if vr in _FLOAT_VRS:
        return float(value)
    return str(value)


# Decoding of raw values that pydicom would turn into plain strings, done here for speed (a
# header read is most of a get, and pydicom's conversion was 60 % of it). Same result as
# pydicom 3's converters with datetime_conversion off: the default-repertoire VRs ...
_DEFAULT_VRS = frozenset({"CS", "AS", "DA", "DT", "TM", "UI"})
# ... and the text VRs, for the character sets that are a plain codec (no ISO 2022 switching).
_TEXT_MULTI_VRS = frozenset({"SH", "LO", "UC"})
_TEXT_SINGLE_VRS = frozenset({"LT", "ST", "UT"})
_PLAIN_CODECS = {"": "iso8859", "ISO_IR 6": "iso8859", "ISO_IR 100": "latin_1",
                 "ISO_IR 192": "UTF8"}


def _text_codec(ds: Dataset) -> str | None:
    charset = ds.get("SpecificCharacterSet")
    if charset is None or isinstance(charset, str):
        return _PLAIN_CODECS.get((charset or "").strip())
    return None


def _fast_value(raw: RawDataElement, vr: str, codec: str | None) -> Any:
    """The value pydicom would give, or NotImplemented when only pydicom can say."""
    data = raw.value
    if data is None or raw.length == 0xFFFFFFFF or b"\x1b" in data:  # ESC: ISO 2022 switching
        return NotImplemented
    if vr in _DEFAULT_VRS:
        if vr in ("DA", "DT", "TM") and pydicom_config.datetime_conversion:
            return NotImplemented
        text = data.decode("iso8859")
        items = text.rstrip(" \x00").split("\\")
    elif vr == "AE":
        items = [x.strip() for x in data.decode("iso8859").split("\\")]
    elif codec is not None and vr in _TEXT_MULTI_VRS:
        items = [x.rstrip("\x00 ") for x in data.decode(codec).split("\\")]
    elif codec is not None and vr in _TEXT_SINGLE_VRS:
        return data.decode(codec).rstrip("\x00 ")
    else:
        return NotImplemented
    return items[0] if len(items) == 1 else items


def get_identifiers(ds: Dataset) -> dict[str, Plain]:
    """``{keyword: value}`` of the top-level, non-empty, non-binary, non-sequence elements."""
    out: dict[str, Plain] = {}
    codec = _text_codec(ds)
    for tag in sorted(ds.keys()):  # the order of ``for element in ds``
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            keyword = dictionary_keyword(tag) if dictionary_has_tag(tag) else ""
            if not keyword or keyword == "PixelData":  # private and unknown tags too
                continue
            vr = raw.VR or dictionary_VR(tag)
            if vr == "SQ" or (vr in _BINARY_VRS and vr != "UN"):  # UN may convert to more
                continue
            try:
                value = _fast_value(raw, vr, codec)
            except UnicodeDecodeError:  # pydicom replaces and warns: let it
                value = NotImplemented
            if value is not NotImplemented:
                if isinstance(value, list):
                    value = [v for v in value if v != ""]
                if value not in ("", []):
                    out[keyword] = value
                continue
        element = ds[tag]
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
