"""Identifiers of one dataset, as deid's client exported them (spec Part A §3), JSON-safe.

``get_identifiers`` returns the flat ``{keyword: value}`` of one file; the pipeline nests it as
``ids[entity][item]``. Only top-level elements with a keyword and a non-empty value are kept
(the 2017 client's choice); pixel data, other binary values and sequences are left out because
they are not identifiers a recipe can reuse through ``var:`` and would not survive JSON.
Values become plain types: numbers (US/SS/UL/SL/SV/UV/FL/FD/IS/DS) int or float, everything
else (dates, times, person names, UIDs, tags) str, multi-valued elements lists of those.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import (
    dictionary_has_tag,
    dictionary_keyword,
    dictionary_VR,
    tag_for_keyword,
)
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import validate_value

from ..dicom import compat
from .values import BYTES_VRS as _BINARY_VRS

__all__ = ["get_identifiers", "entity_item", "peek_entity_item", "cap_identifiers",
           "cap_key", "VALUE_MAX", "KEY_MAX", "CUT_NOTE"]

VALUE_MAX = 1024
"""Characters of one field's value kept in the ids (a list: of its items' text together).
Header text fields are at most 10,240 characters by their VR (UT, LT excepted in theory) and in
practice under a few hundred; a 20 MB value in a hostile file would otherwise be stored whole
in Redis and in the export, and a hundred such files fill a 2 GiB Redis."""

KEY_MAX = 256
"""Characters of an entity or item key (PatientID, SOPInstanceUID: 64 by their VRs) kept as
they are; a longer key is cut and given a digest of the whole, so it stays unique."""

CUT_NOTE = "_cut"
"""Field of an item that lists the fields :func:`cap_identifiers` cut, each with its original
length in characters (not a keyword, so no recipe reads it by accident)."""

_INT_VRS = frozenset({"US", "SS", "UL", "SL", "SV", "UV", "IS"})
_FLOAT_VRS = frozenset({"FL", "FD", "DS"})

Plain = str | int | float | list[Any]


def _json_value(value: Any, vr: str) -> Any:
    """A value of an element of ``vr`` as the ids files hold it: int, float or str."""
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


# Numbers decoded as pydicom does (struct, then int/float), except for the LUT descriptors,
# whose first value pydicom may reinterpret as signed.
_STRUCT_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "SV": "q", "UV": "Q",
                   "FL": "f", "FD": "d"}
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
# IS and DS strings that pydicom converts without a warning and to the same number: the
# VR's pattern (stricter: no newline before the end) and length.
_IS_TEXT = re.compile(r" *[+-]?[0-9]+ *")
_DS_TEXT = re.compile(r" *[+-]?([0-9]+|[0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")


def _numbers(raw: RawDataElement, vr: str, data: bytes, tag: int) -> Any:
    if tag in _LUT_DESCRIPTORS or raw.is_little_endian is None:
        return NotImplemented
    fmt = _STRUCT_FORMATS[vr]
    size = struct.calcsize("<" + fmt)  # standard sizes, as pydicom's "=" format
    if len(data) % size:
        return NotImplemented  # pydicom raises or warns: let it
    values = struct.unpack(("<" if raw.is_little_endian else ">") + str(len(data) // size) + fmt,
                           data)
    if vr in ("FL", "FD"):
        items: list[Any] = [float(v) for v in values]
    else:
        items = list(values)
    return items[0] if len(items) == 1 else items


def _number_strings(vr: str, data: bytes) -> Any:
    text = data.decode("iso8859")
    if vr == "DS":
        text = text.strip()
    items: list[Any] = text.rstrip(" \x00").split("\\")
    for i, item in enumerate(items):
        if item == "":
            continue
        if vr == "IS":
            if len(item) > 12 or not _IS_TEXT.fullmatch(item):
                return NotImplemented
            number: int | float = int(item)
            if not -(2**31) <= number < 2**31:
                return NotImplemented
        else:
            if len(item) > 16 or not _DS_TEXT.fullmatch(item):
                return NotImplemented
            number = float(item)
            if not math.isfinite(number):
                return NotImplemented
        items[i] = number
    return items[0] if len(items) == 1 else items


def _settings_decide(vr: str) -> bool:
    """Whether pydicom's settings change how ``vr`` converts (then only pydicom can say)."""
    if vr in ("DA", "DT", "TM"):
        return bool(pydicom_config.datetime_conversion)
    if vr in ("IS", "DS"):
        return bool(pydicom_config.use_IS_numpy or pydicom_config.use_DS_numpy
                    or pydicom_config.use_DS_decimal)
    return False


def _fast_value(raw: RawDataElement, vr: str, codec: str | None, tag: int) -> Any:
    """The value pydicom would give, or NotImplemented when only pydicom can say."""
    data = raw.value
    if data is None or raw.length == 0xFFFFFFFF:
        return NotImplemented
    if vr in _STRUCT_FORMATS:
        return _numbers(raw, vr, data, tag) if data else NotImplemented
    if b"\x1b" in data:  # ESC: ISO 2022 switching
        return NotImplemented
    if _settings_decide(vr):
        return NotImplemented
    if vr in _DEFAULT_VRS:
        text = data.decode("iso8859")
        items = text.rstrip(" \x00").split("\\")
    elif vr in ("IS", "DS"):
        return _number_strings(vr, data)
    elif vr == "AE":
        items = [x.strip() for x in data.decode("iso8859").split("\\")]
    elif codec is not None and vr in _TEXT_MULTI_VRS:
        items = [x.rstrip("\x00 ") for x in data.decode(codec).split("\\")]
    elif codec is not None and vr in _TEXT_SINGLE_VRS:
        return data.decode(codec).rstrip("\x00 ")
    elif codec is not None and vr == "PN":
        text = data.rstrip(b"\x00 ").decode(codec)
        if "=" in text:  # component groups: PersonName drops empty trailing ones
            return NotImplemented
        items = text.split("\\")
    else:
        return NotImplemented
    return items[0] if len(items) == 1 else items


_ENTRIES: dict[int, tuple[str, str | None]] = {}
_ENTRIES_MAX = 4096
"""Cache of (keyword or "", dictionary VR or None) per tag: pydicom's lookups cost more than
the rest of a raw element's handling. Bounded: once full, further tags are looked up each
time (private and unknown tags vary per file, standard ones do not)."""


def _entry(tag: int) -> tuple[str, str | None]:
    try:
        return _ENTRIES[tag]
    except KeyError:
        pass
    if dictionary_has_tag(tag):
        entry: tuple[str, str | None] = (dictionary_keyword(tag), dictionary_VR(tag))
    else:
        entry = ("", None)
    if len(_ENTRIES) < _ENTRIES_MAX:
        _ENTRIES[tag] = entry
    return entry


_VALUES: dict[tuple[str, str | None, bytes], Any] = {}
_VALUES_MAX = 4096
_VALUES_LEN = 64
"""Decoded raw values of string VRs, by (VR, codec, bytes), final (lists as tuples) or
NotImplemented: most values repeat across the files of a series (modality, dates, study
UIDs, descriptions). Only values up to ``_VALUES_LEN`` bytes; emptied when full, so bounded."""


def _cached_value(raw: RawDataElement, vr: str, codec: str | None, tag: int) -> Any:
    data = raw.value
    if data is None or vr in _STRUCT_FORMATS or len(data) > _VALUES_LEN or raw.length == 0xFFFFFFFF:
        return _filtered(raw, vr, codec, tag)
    # What the decoding depends on besides these bytes: pydicom's settings, checked first.
    if _settings_decide(vr):
        return NotImplemented
    key = (vr, codec, data)
    try:
        value = _VALUES[key]
    except KeyError:
        value = _filtered(raw, vr, codec, tag)
        if isinstance(value, list):
            value = tuple(value)
        if len(_VALUES) >= _VALUES_MAX:
            _VALUES.clear()
        _VALUES[key] = value
    return list(value) if isinstance(value, tuple) else value


def _filtered(raw: RawDataElement, vr: str, codec: str | None, tag: int) -> Any:
    """_fast_value without the empty items, "" or [] for nothing, NotImplemented if unknown."""
    try:
        value = _fast_value(raw, vr, codec, tag)
    except UnicodeDecodeError:  # pydicom replaces and warns: let it
        return NotImplemented
    if isinstance(value, list):
        value = [v for v in value if v != ""]
    return value


def get_identifiers(ds: Dataset) -> dict[str, Plain]:
    """``{keyword: value}`` of the top-level, non-empty, non-binary, non-sequence elements."""
    out: dict[str, Plain] = {}
    codec = _text_codec(ds)
    elements = compat.elements(ds)  # raw elements as read; Dataset.get_item would also convert some
    # Sorted by int: pydicom's Tag compares (and compares equal to ints) in Python.
    for tag in sorted(elements, key=int):  # the order of ``for element in ds``
        raw = elements[tag]
        if isinstance(raw, RawDataElement) and raw.value is not None:
            number = int(tag)
            keyword, dict_vr = _ENTRIES.get(number) or _entry(number)
            if not keyword or keyword == "PixelData":  # private and unknown tags too
                continue
            vr = raw.VR or dict_vr
            if vr == "SQ" or (vr in _BINARY_VRS and vr != "UN"):  # UN may convert to more
                continue
            value = _cached_value(raw, vr, codec, number)  # type: ignore[arg-type]
            if value is not NotImplemented:
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
                items = [_json_value(v, element.VR) for v in value if v not in (None, "")]
                if not items:
                    continue
                out[keyword] = items
            else:
                out[keyword] = _json_value(value, element.VR)
        except (TypeError, ValueError):
            out[keyword] = str(value)
    return out


def cap_identifiers(fields: dict[str, Plain], limit: int = VALUE_MAX) -> dict[str, Plain]:
    """``fields`` with every value cut to ``limit`` characters, in place; the cut ones are
    noted under :data:`CUT_NOTE` (``{field: original length}``), so a person reading the ids
    sees what was shortened. A list keeps its first items that fit; numbers are never cut.

    Costs a type check per field, and a length per list item: most fields are short.
    """
    cut: dict[str, int] = {}
    for name, value in fields.items():
        if isinstance(value, str):
            if len(value) > limit:
                cut[name] = len(value)
                fields[name] = value[:limit]
        elif isinstance(value, list):
            length = keep = 0
            for item in value:
                length += len(item) if isinstance(item, str) else len(str(item))
                if length <= limit:
                    keep += 1
            if length > limit:
                cut[name] = length
                kept = value[:keep]
                if not kept:  # one item over the limit on its own: keep its start
                    first = value[0]
                    kept = [first[:limit] if isinstance(first, str) else first]
                fields[name] = kept
    if cut:
        fields[CUT_NOTE] = cut  # type: ignore[assignment]  # the note is a mapping, not Plain
    return fields


def cap_key(value: str, limit: int = KEY_MAX) -> str:
    """An entity or item key as stored: itself when up to ``limit`` characters, else its start
    and a digest of the whole (unique, the same in get and put)."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{value[:limit - 40]}...cut:{digest}"


def entity_item(
    ds: Dataset, entity_field: str = "PatientID", item_field: str = "SOPInstanceUID"
) -> tuple[str | None, str | None]:
    """The (entity, item) keys of a file's identifiers; None where the element is absent/empty."""

    def one(keyword: str) -> str | None:
        value = _field_value(ds, keyword)
        if value is None or value == "":
            return None
        return str(value)

    return one(entity_field), one(item_field)


_FIELD_TAGS: dict[tuple[type, str], int | None] = {}
_FIELD_TAGS_MAX = 256
_PLAIN_DATASETS = (Dataset, FileDataset)


def _cached_field_tag(cls: type, keyword: str) -> int | None:
    """:func:`_field_tag`, remembered (a few keywords, asked for every file)."""
    key = (cls, keyword)
    try:
        return _FIELD_TAGS[key]
    except KeyError:
        tag = _field_tag(cls, keyword)
        if len(_FIELD_TAGS) < _FIELD_TAGS_MAX:
            _FIELD_TAGS[key] = tag
        return tag


def _field_tag(cls: type, keyword: str) -> int | None:
    """The tag ``Dataset.get(keyword)`` ends up reading, or None where it may read something
    else (not a keyword, another dataset class, a class attribute of that name)."""
    if cls not in _PLAIN_DATASETS or hasattr(cls, keyword):
        return None
    return tag_for_keyword(keyword)


def peek_entity_item(
    ds: Dataset, entity_field: str = "PatientID", item_field: str = "SOPInstanceUID"
) -> tuple[str | None, str | None]:
    """:func:`entity_item` without converting ``ds``'s elements, for a dataset read only for
    its identifiers (the get stage), where that conversion (pydicom's, a few microseconds an
    element) serves no later reader.

    The same keys, and the same warnings: a field still raw whose value decodes, as
    :func:`get_identifiers` decodes it, to one string that pydicom's reading validation
    passes is that string (pydicom converts it to that string, or to a ``str`` subclass of
    it, silently); any other field is read as :func:`entity_item` reads it.
    """
    if not compat.stock_conversion():
        return entity_item(ds, entity_field, item_field)
    codec: Any = NotImplemented

    def one(keyword: str) -> str | None:
        nonlocal codec
        tag = _cached_field_tag(type(ds), keyword)
        value: Any = None
        if tag is not None and keyword not in ds.__dict__:
            raw = compat.elements(ds).get(tag)  # type: ignore[call-overload]
            if type(raw) is RawDataElement and raw.value is not None:
                vr = raw.VR or (_ENTRIES.get(tag) or _entry(tag))[1]
                if codec is NotImplemented:
                    codec = _text_codec(ds)
                value = _cached_value(raw, vr, codec, tag)  # type: ignore[arg-type]
                if (type(value) is not str or vr is None
                        or not _quietly_converted(vr, raw.value, codec, value)):
                    value = None
        if value is None:
            value = _field_value(ds, keyword)
        if value is None or value == "":
            return None
        return str(value)

    return one(entity_field), one(item_field)


_UNVALIDATED_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
"""VRs whose string values pydicom's converters return without validating them (dates and
times as long as ``datetime_conversion`` is off, which :func:`_settings_decide` checks)."""


def _quietly_converted(vr: str, data: bytes, codec: str | None, value: str) -> bool:
    """Whether pydicom converts the raw ``data`` (decoded: ``value``) without a validation
    warning: its converters validate a UID's value, and a text value as decoded, before the
    padding is stripped; a value that fails is left to pydicom, which warns (or raises)."""
    if vr in _UNVALIDATED_VRS:
        return True
    if vr == "UI":
        text = value
    elif codec is not None and (vr in _TEXT_MULTI_VRS or vr in _TEXT_SINGLE_VRS):
        text = data.decode(codec)
    else:
        return False
    try:
        validate_value(vr, text, pydicom_config.RAISE)
    except ValueError:
        return False
    return True


def _field_value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, by the keyword's tag: its lookups were most of a put's
    entity_item (which runs for every file of get and put)."""
    tag = _cached_field_tag(type(ds), keyword)
    if tag is None or keyword in ds.__dict__:
        return ds.get(keyword)
    return compat.element_value(ds, tag)


