"""The file meta (PS3.10 group 0002) of an output: written by deid-workers, true to its data set.

Why: the file meta travels with every output and is read before anything else, by PACS and
viewers alike. Copied from the input it would keep values the data set lost (the original
SOP Instance UID when a recipe removes SOPInstanceUID), name the product that wrote the
original, or describe an encoding the bytes do not have; and real archives hold files whose
meta lacks a transfer syntax, or that have no meta at all. :func:`complete_meta` rebuilds it
from the de-identified data set, just before the write:

- Transfer Syntax UID: how the data set will really be encoded (:func:`output_syntax`). The
  bytes win over the meta: a data set read as Implicit VR gets Implicit VR Little Endian, a
  missing transfer syntax is inferred from how the data set was read, and compressed
  (encapsulated) pixel data keeps the compressed syntax the meta names, the data set then
  being written as Explicit VR Little Endian, which every compressed syntax requires.
- Media Storage SOP Class UID: the data set's SOPClassUID, else the input meta's; when neither
  exists the file is still written, without it, and listed with ``SOPClassUID`` missing
  (such files get the meta's other elements through pydicom's non-enforcing writer).
- Media Storage SOP Instance UID: the data set's SOPInstanceUID. When the recipe removed it (or
  its ``REPLACE`` had no value), a keyed pseudonym of the original (HMAC, the ``hmac_uid`` the
  default recipe replaces it with) goes both into the meta and back into the data set, where
  the SOP Common module makes it Type 1. An input without SOPInstanceUID stays without; its
  meta gets the pseudonym of the input meta's UID, or, when it had none either, no instance
  UID (listed as missing, like the class): a UID made up here would claim an identity the
  data set does not have, which validators report.
- Implementation Class UID and Version Name: deid-workers' own (:data:`IMPLEMENTATION_CLASS_UID`,
  :data:`IMPLEMENTATION_VERSION_NAME`), since deid-workers wrote the file.
- Nothing else: the source, sending and receiving AE titles, presentation addresses and private
  information of the input's meta describe the system that sent the original, not this file.

Only the meta's elements are replaced (new elements, never assigned to shared ones); the
encoder computes the group length.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..dicom import compat
from ..recipe.funcs import hmac_uid
from ..version import __version__

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "NoPixelSyntax",
    "Original",
    "complete_meta",
    "implementation_class_uid",
    "implementation_version_name",
    "original_of",
    "output_syntax",
]

_PROJECT_URL = "https://pypi.org/project/deid-workers/"


def implementation_class_uid() -> str:
    """``2.25.`` + the UUID (version 5, URL namespace) of the project's name on PyPI, as
    PS3.5 B.2 derives a UID from a UUID: fixed for every version (the version name tells
    versions apart) and unique to the project without a registered root."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, _PROJECT_URL).int}"


IMPLEMENTATION_CLASS_UID = implementation_class_uid()
"""(0002,0012) of every output."""


def implementation_version_name(version: str | None = None) -> str:
    """(0002,0013): the project's name and version in at most 16 characters (SH), the first
    of ``deid-workers 0.1.0``, ``deid-workers0.1.0``, ``deidworkers0.1.0`` that fits."""
    if version is None:
        version = __version__
    for text in (f"deid-workers {version}", f"deid-workers{version}", f"deidworkers{version}"):
        if len(text) <= 16:
            return text
    return f"deidworkers{version}"[:16]


IMPLEMENTATION_VERSION_NAME = implementation_version_name()

_META_VERSION = 0x00020001
_MEDIA_CLASS = 0x00020002
_MEDIA_INSTANCE = 0x00020003
_TRANSFER_SYNTAX = 0x00020010
_IMPLEMENTATION_CLASS = 0x00020012
_IMPLEMENTATION_VERSION = 0x00020013
_KEPT = frozenset({0x00020000, _META_VERSION, _MEDIA_CLASS, _MEDIA_INSTANCE, _TRANSFER_SYNTAX,
                   _IMPLEMENTATION_CLASS, _IMPLEMENTATION_VERSION})
_SOP_CLASS = 0x00080016
_SOP_INSTANCE = 0x00080018
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF


class NoPixelSyntax(Exception):
    """Encapsulated pixel data with no transfer syntax that says how it is compressed."""


class Original(NamedTuple):
    """What :func:`complete_meta` needs of the input, taken before the recipe ran (a tuple:
    built once per file, it costs a fifth of a frozen dataclass)."""

    sop_class: str | None
    sop_instance: str | None
    meta_class: str | None
    meta_instance: str | None


def _uid_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):  # a raw element's value
        value = value.decode("ascii", "replace")
    text = str(value).strip(" \0")
    return text or None


def original_of(ds: Dataset) -> Original:
    """The input's SOP Class/Instance UIDs, in the data set and in its meta (a few dict
    lookups; raw values are read as bytes, nothing is converted)."""
    meta = ds.__dict__.get("file_meta")
    if not isinstance(meta, Dataset):
        meta = _NO_META
    return Original(
        _uid_text(_value(ds, _SOP_CLASS)),
        _uid_text(_value(ds, _SOP_INSTANCE)),
        _uid_text(_value(meta, _MEDIA_CLASS)),
        _uid_text(_value(meta, _MEDIA_INSTANCE)),
    )


_NO_META = Dataset()


def _encapsulated(ds: Dataset) -> bool | None:
    """Whether PixelData is encapsulated (undefined length); None without PixelData."""
    elem = compat.elements(ds).get(_PIXEL_DATA)  # type: ignore[call-overload]
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        return bool(elem.length == _UNDEFINED)
    return bool(elem.is_undefined_length)


def output_syntax(ds: Dataset) -> UID:
    """The transfer syntax the output is written with (see the module docstring).

    Raises :class:`NoPixelSyntax` for encapsulated pixel data whose meta names no
    compressed syntax: the codec cannot be known.
    """
    meta = ds.__dict__.get("file_meta")
    return _syntax(ds, _value(meta, _TRANSFER_SYNTAX) if isinstance(meta, Dataset) else None)


def _syntax(ds: Dataset, meta_value: Any) -> UID:
    implicit, little = ds.original_encoding
    key = (_uid_text(meta_value), implicit, little, _encapsulated(ds))
    try:
        syntax = _SYNTAXES[key]
    except KeyError:
        syntax = _decide_syntax(*key)
        if len(_SYNTAXES) < 256:  # a run meets a handful of combinations
            _SYNTAXES[key] = syntax
    if syntax is None:
        raise NoPixelSyntax
    return syntax


_SYNTAXES: dict[tuple[Any, ...], UID | None] = {}


def _decide_syntax(text: str | None, implicit: bool | None, little: bool | None,
                   encapsulated: bool | None) -> UID | None:
    """:func:`output_syntax` for a meta syntax ``text``, the encoding the data set was read
    in and its pixel data (None: no syntax can describe the file)."""
    ts = UID(text) if text else None
    if implicit is None:  # a data set built in memory: its meta, else the common default
        implicit, little = (ts.is_implicit_VR, ts.is_little_endian) if (
            ts is not None and ts.is_transfer_syntax) else (False, True)
    native = (ImplicitVRLittleEndian if implicit
              else ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if ts is None:
        return None if encapsulated else native
    if not ts.is_transfer_syntax:
        # A private (or unknown) syntax: pydicom read it as Explicit VR Little Endian. Kept
        # unless the bytes said otherwise; nothing here can judge its pixel encoding.
        return ts if (implicit, little) == (False, True) else native
    if ts.is_encapsulated:
        return native if encapsulated is False else ts
    if encapsulated:
        return None
    if (ts.is_implicit_VR, ts.is_little_endian) == (implicit, little):
        return ts  # deflate too: it is Explicit VR Little Endian once inflated
    return native


def _value(ds: Dataset, tag: int) -> Any:
    """The value at ``tag``, raw bytes or converted, without converting (a lookup)."""
    elem = compat.elements(ds).get(tag)  # type: ignore[call-overload]
    return None if elem is None else elem.value


_TEMPLATES: dict[tuple[int, Any], DataElement] = {}


def _element(tag: int, value: Any) -> DataElement:
    """A new element equal to ``DataElement(tag, <dictionary VR>, value)``, copied from one
    built once per tag (building one validates the value, a few microseconds each time)."""
    kind = type(value)
    template = _TEMPLATES.get((tag, kind))
    if template is None:
        template = _TEMPLATES[(tag, kind)] = DataElement(tag, dictionary_VR(tag), value)
    new = object.__new__(DataElement)
    new.__dict__.update(template.__dict__)
    if compat.stored_value(template) != value:
        # A UID is a str that pydicom validates when built (a warning at most, as the
        # writer warns); values here are the data set's or made by hmac_uid.
        compat.set_stored_value(new, str.__new__(UID, value) if template.VR == "UI" else value)
    return new


def complete_meta(ds: Dataset, original: Original, key: Callable[[], bytes],
                  rel: str) -> tuple[str, ...]:
    """Give the de-identified ``ds`` its output file meta (in place; see the module docstring).

    ``original`` is :func:`original_of` the input; ``key()`` gives the HMAC key (called only
    when a pseudonym is needed); ``rel`` is the input's relative path. Returns the keys the
    output lacks because the input had them nowhere: ``SOPClassUID``, ``SOPInstanceUID``
    (their media storage elements are then left out of the meta too).
    Raises :class:`NoPixelSyntax` (see :func:`output_syntax`).
    """
    meta = ds.__dict__.get("file_meta")
    if not isinstance(meta, FileMetaDataset):
        meta = FileMetaDataset()
        ds.file_meta = meta
    elements: Any = compat.elements(meta)
    # One pass by the dict's own keys: looking a BaseTag key up by int calls its Python
    # __eq__, several times per file otherwise.
    present: dict[int, Any] = {}
    for tag, elem in list(elements.items()):
        if tag.real in _KEPT:
            present[tag.real] = elem
        else:
            del elements[tag]
    syntax = _syntax(ds, _value_of(present.get(_TRANSFER_SYNTAX)))

    sop_class = _uid_text(_value(ds, _SOP_CLASS))
    if sop_class is None and original.sop_class is not None:
        sop_class = original.sop_class  # not identifying, and Type 1: put back
        _put(compat.elements(ds), _element(_SOP_CLASS, sop_class))
    missing: tuple[str, ...] = ()
    media_class = sop_class or original.meta_class
    if media_class is None:
        if _MEDIA_CLASS in present:
            del elements[present[_MEDIA_CLASS].tag]
        missing = ("SOPClassUID",)
    else:
        _set(elements, present, _MEDIA_CLASS, media_class)

    instance = _uid_text(_value(ds, _SOP_INSTANCE))
    if instance is None:
        if original.sop_instance is not None:
            instance = hmac_uid(key(), original.sop_instance)
            _put(compat.elements(ds), _element(_SOP_INSTANCE, instance))
        elif original.meta_instance is not None:
            instance = hmac_uid(key(), original.meta_instance)
    if instance is None:
        # Known nowhere in the input: left out, as the input left it (a UID made up here
        # would name an instance the data set does not claim to be).
        if _MEDIA_INSTANCE in present:
            del elements[present[_MEDIA_INSTANCE].tag]
        missing += ("SOPInstanceUID",)
    else:
        _set(elements, present, _MEDIA_INSTANCE, instance)
    _set(elements, present, _TRANSFER_SYNTAX, syntax)
    version = present.get(_META_VERSION)
    if version is None or version.value != b"\x00\x01":
        _put(elements, _element(_META_VERSION, b"\x00\x01"))
    for tag, value in ((_IMPLEMENTATION_CLASS, IMPLEMENTATION_CLASS_UID),
                       (_IMPLEMENTATION_VERSION, IMPLEMENTATION_VERSION_NAME)):
        old = present.get(tag)
        if old is None or old.value != value:  # ours already: a file written by us
            _put(elements, _element(tag, value))
    return missing


def _value_of(elem: Any) -> Any:
    return None if elem is None else elem.value


def _set(elements: Any, present: dict[int, Any], tag: int, value: str) -> None:
    """Set a UI element of the meta unless it already holds ``value`` (a new element: the
    old one may be shared with the input's meta)."""
    old = present.get(tag)
    if old is not None and _uid_text(old.value) == value:
        return
    _put(elements, _element(tag, value))


def _put(elements: Any, elem: DataElement) -> None:
    """Store ``elem`` in a dataset's element dict under its BaseTag (pydicom's writer reads
    the keys as tags)."""
    elements[elem.tag] = elem
