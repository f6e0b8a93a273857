"""Elements made, set and deleted the cheap way, holding exactly what pydicom's own calls would.

Why: a default recipe replaces or blanks a few dozen fields per file with a handful of distinct
values, and each went through pydicom's conversion and validation, a fifth of ``deidentify``.
Here a recipe literal's element is built once per process and copied (:func:`new_element`),
keyed pseudonyms and shifted dates skip validation that cannot fail for them, and setting or
deleting a plain public element skips checks that cannot fail. Anything unusual (private,
pixel or sequence elements, subclasses, changed pydicom settings) goes through pydicom itself.
Shared state is bounded by :data:`CACHE_LIMIT`.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom import config
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import PIXEL_KEYWORDS, Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import MAX_VALUE_LEN, STR_VR_REGEXES, PersonName

from ..dicom import compat

__all__ = ["CACHE_LIMIT", "remember", "shared_template", "fresh_value", "new_element", "set_element",
           "delete_element", "raw_uid", "holds_canonical_uid"]

CACHE_LIMIT = 20_000
"""Entries kept by each cross-file cache below before it is emptied: a worker sees the same few
hundred (path, creator) shapes in file after file, and its memory must stay flat over a run."""

def remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value


_PLAIN_DATASETS = (Dataset, FileDataset, FileMetaDataset)
_SHAREABLE = frozenset({str, int, float, bytes, UID, type(None)})
_NO_TEMPLATE = ("SQ", "UN")  # SQ values are mutable; UN becomes the tag's VR
_TEMPLATES: dict[tuple[Any, ...], dict[str, Any] | None] = {}
_UI_REGEX = STR_VR_REGEXES["UI"]
_UI_MAX = MAX_VALUE_LEN["UI"]


def _state() -> tuple[Any, ...]:
    """The pydicom settings that decide what DataElement(tag, vr, value) holds."""
    return (config.settings.reading_validation_mode, config.datetime_conversion,
            config.use_DS_decimal, config.use_DS_numpy, config.use_IS_numpy,
            config.replace_un_with_known_vr)


def shared_template(vr: str, value: Any) -> dict[str, Any] | None:
    """The attributes of ``DataElement(tag, vr, value)`` for a recipe literal or a BLANK
    (``value`` of one of the plain types), built once per process; None when pydicom's
    conversion is not the same in every file: the value is invalid for the VR (pydicom warns
    on each construction), or converts to a mutable or tag-dependent value.

    Why: a default recipe replaces or blanks ~25 fields per file with ~10 distinct values;
    pydicom's conversion and validation of them was a fifth of ``deidentify``.
    """
    if vr in _NO_TEMPLATE or (value is not None and type(value) not in _SHAREABLE):
        return None
    state = _state()
    key = (vr, type(value), value, state)
    try:
        return _TEMPLATES[key]
    except KeyError:
        pass
    template: dict[str, Any] | None = None
    if not (state[1] and vr in ("DA", "DT", "TM")):  # leap seconds warn even in RAISE mode
        try:
            # RAISE: an invalid value raises rather than warns (then it is never shared)
            probe = DataElement(0x00080070, vr, value, validation_mode=config.RAISE)
        except Exception:  # noqa: BLE001 - any failure: build it the ordinary way each time
            probe = None
        if probe is not None and (compat.stored_value(probe) is None or type(compat.stored_value(probe)) in _SHAREABLE
                                  or type(compat.stored_value(probe)) is PersonName):
            template = dict(probe.__dict__)
            template["validation_mode"] = state[0]
            if type(compat.stored_value(probe)) is PersonName:
                compat.stored_value(probe).validation_mode = state[0]
    remember(_TEMPLATES, key, template)
    return template


def fresh_value(value: Any) -> Any:
    """A template's value for one element: immutable values are shared, a PersonName is
    copied (it has attributes a caller could change)."""
    if type(value) is PersonName:
        copy = object.__new__(PersonName)
        copy.__dict__.update(value.__dict__)
        return copy
    return value


def new_element(key: BaseTag, vr: str, value: Any, shared: bool = False) -> DataElement:
    """``DataElement(key, vr, value)``, cheaper for a ``shared`` value (a recipe literal or
    BLANK: see :func:`shared_template`), for a valid single UID (a keyed pseudonym, new in
    every file: pydicom's validation of it is the UID pattern and length only) and for a
    plain date (a shifted one: ``YYYYMMDD``, ``YYYYMMDDHHMMSS.FFFFFF``, valid as they are)."""
    template = shared_template(vr, value) if shared else None
    if template is None:
        if type(value) is not str:
            return DataElement(key, vr, value)
        if vr == "UI" and len(value) <= _UI_MAX and _UI_REGEX.fullmatch(value):
            template = _uid_template(value)
        elif vr in _PLAIN_DATES and _PLAIN_DATES[vr].fullmatch(value) and not config.datetime_conversion:
            template = _date_template(vr, value)
        else:
            return DataElement(key, vr, value)
    element = object.__new__(DataElement)
    attrs = element.__dict__
    attrs.update(template)
    attrs["tag"] = key
    attrs["VR"] = vr  # the caller's object (a str, or pydicom's VR enum, hashed alike)
    attrs[compat.VALUE] = fresh_value(attrs[compat.VALUE])
    return element


_PLAIN_DATES = {
    "DA": re.compile(r"(1[0-9]|[2-9][0-9])[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"),
    "DT": re.compile(r"(1[0-9]|[2-9][0-9])[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
                     r"([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]\.[0-9]{6}"),
}
"""Dates that pydicom keeps as the same str and validates without a word (no padding, no
backslash, no leap second, no zone), when it does not convert dates to objects."""


def _date_template(vr: str, value: str) -> dict[str, Any]:
    """What DataElement(tag, vr, value) holds for a value of :data:`_PLAIN_DATES`."""
    return {"tag": None, "VR": vr, "validation_mode": config.settings.reading_validation_mode,
            compat.VALUE: value, "file_tell": None, "is_undefined_length": False,
            "private_creator": None}


def _uid_template(value: str) -> dict[str, Any]:
    """What DataElement(tag, "UI", value) holds for a value that matches the UID pattern
    (no backslash, no whitespace: nothing to split or strip, nothing to warn about)."""
    mode = config.settings.reading_validation_mode
    return {"tag": None, "VR": "UI", "validation_mode": mode,
            compat.VALUE: UID(value, config.IGNORE), "file_tell": None,
            "is_undefined_length": False, "private_creator": None}


def set_element(parent: Dataset, key: BaseTag, element: DataElement) -> None:
    """``parent[key] = element`` for a public, non-pixel, non-sequence element, which is
    all pydicom's __setitem__ does then (after checks that cannot fail here)."""
    if (type(parent) in _PLAIN_DATASETS and not key >> 16 & 1 and key not in PIXEL_KEYWORDS
            and element.VR != "SQ" and (type(parent) is not FileMetaDataset or key >> 16 == 2)):
        compat.elements(parent)[key] = element
    else:
        parent[key] = element


def delete_element(parent: Dataset, key: BaseTag) -> None:
    """``del parent[key]`` if present; for a public, non-pixel element that is all pydicom's
    __delitem__ does (private creators and pixel data reset its caches: left to it)."""
    elements = compat.elements(parent)
    if key not in elements:
        return
    if type(parent) in _PLAIN_DATASETS and not key >> 16 & 1 and key not in PIXEL_KEYWORDS:
        del elements[key]
    else:
        del parent[key]


def raw_uid(raw: Any, tag: int) -> UID | None:
    """The value pydicom's conversion gives a raw UI element, when that is one valid UID
    (the conversion would then not warn); None for anything else (the caller converts)."""
    if not isinstance(raw, RawDataElement) or type(raw.value) is not bytes or not raw.length:
        return None
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    if vr != "UI" or not compat.stock_conversion():
        return None
    text = raw.value.decode(default_encoding).rstrip("\0 ")
    if len(text) > _UI_MAX or not _UI_REGEX.fullmatch(text):
        return None
    return UID(text, config.IGNORE)


def holds_canonical_uid(dataset: Dataset, tag: int) -> bool:
    """Does ``dataset`` hold, still raw, one valid UID at ``tag``, padded as pydicom would
    write it? Then its value is known to be non-empty without converting it, and converting
    it later (or never) writes the same bytes and warns about nothing."""
    raw = compat.elements(dataset).get(tag)  # type: ignore[call-overload]
    text = raw_uid(raw, tag)
    if text is None:
        return False
    encoded = text.encode("ascii")
    return bool(raw.value == (encoded + b"\0" if len(encoded) % 2 else encoded))

