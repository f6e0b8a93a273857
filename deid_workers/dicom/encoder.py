"""Encode a dataset as a Part-10 file, byte for byte as ``ds.save_as(fp, enforce_file_format=True)``.

Why: in the put stage pydicom's writer cost as much as the de-identification itself. For each
element it builds a ``DicomBytesIO``, re-converts the character set names and re-checks the
same conditions, and it deep-copies the file meta of every file. :func:`encode_part10` follows
the same steps in the same order (so the output and the changes made to ``ds`` are the same)
but does the per-dataset work once per dataset and writes elements straight into one buffer.

What stays pydicom's: values are encoded by pydicom's own value writers
(``filewriter.writers``), except the plain cases that are most of a file (text, UIDs, codes,
dates, single numbers, bytes: see :mod:`.valuebytes`, each checked against its writer by the tests),
where calling the writer into a buffer cost more than the encoding; odd elements (buffered
values, undefined lengths other than sequences, values over 64 KB in a 16-bit-length VR, VRs it
cannot write) go through ``filewriter.write_data_element``, and datasets whose encoding or
character set changes get ``correct_ambiguous_vr`` and the ``__getitem__`` conversion exactly
as ``write_dataset`` does.

Off the fast path (the whole file goes to ``save_as``): big endian or deflated transfer
syntaxes, private or unknown transfer syntaxes, no file meta or no Transfer Syntax UID, a
preamble of the wrong length, group 0000/0002 elements in the dataset, a Specific Character Set
that pydicom would warn about, and any exception (pydicom then raises its own error, with its
own message; warnings the fast path raised before failing are raised again). ``save_as``
changes ``ds`` only by converting the raw elements it reads (Transfer Syntax UID, SOP
Class/Instance UID, Specific Character Set, PixelData, and everything in a dataset whose
encoding changes) and by setting ``PixelData.is_undefined_length``; the fast path makes the
same changes, and like ``save_as`` it leaves ``ds.file_meta`` as it was (it writes from a
copy).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from struct import Struct
from typing import Any

from pydicom import __version_info__, config
from pydicom.charset import (
    STAND_ALONE_ENCODINGS,
    convert_encodings,
    default_encoding,
    python_encoding,
)
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
)
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import (
    AMBIGUOUS_VR,
    validate_value,
)

from . import compat
from .compat import character_set, elements, stored_value
from .valuebytes import LONG_VRS, NONE, OTHER, PLANS, SIZED, TRUTHY, plan

__all__ = ["encode_part10"]

_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_ZERO_PREAMBLE = b"\x00" * 128

_TAG_UL = Struct("<HHL")  # tag + 32-bit length: implicit VR, items
_TAG_VR_US = Struct("<HH2sH")  # explicit VR, 16-bit length
_TAG_VR_UL = Struct("<HH2s2xL")  # explicit VR, reserved, 32-bit length
_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"  # (0002,0000) UL, length 4
_US = Struct("<H")
_UL = Struct("<L")

# Values pydicom's convert_encodings maps without a warning: DICOM terms it knows and the
# Python codec names it produces (nested items inherit those).
_QUIET_CHARSETS = frozenset(python_encoding) | frozenset(python_encoding.values())
_STAND_ALONE = frozenset(STAND_ALONE_ENCODINGS)

_IMPLEMENTATION_VERSION = f"PYDICOM {'.'.join(__version_info__)}"
"""What validate_file_meta puts in a missing (0002,0013) Implementation Version Name."""


class _OffPath(Exception):
    """The dataset needs something the fast path does not do: let pydicom write it."""


def encode_part10(ds: Dataset) -> bytes:
    """``ds`` as the bytes ``ds.save_as(buffer, enforce_file_format=True)`` would write.

    Raises what ``save_as`` raises for a dataset it cannot write.
    One exception: a data set whose SOP Class or SOP Instance UID is known nowhere (neither in
    the data set nor in the meta), which ``save_as`` refuses, is written as
    ``save_as(enforce_file_format=False)`` writes it, after a 128-byte zero preamble: a Part-10
    file whose meta has every element but that one (deid writes such files too).

    Without :func:`~deid_workers.dicom.compat.fast_io` (``DEID_FAST_IO=0``, or a pydicom the
    fast path was not written for) pydicom writes every dataset.
    """
    try:
        if not compat.fast_io():
            return _encode_with_pydicom(ds)
        return _encode(ds)
    except Exception:  # noqa: BLE001 - any failure: pydicom writes it or raises its own error
        # Off the fast path, or a dataset pydicom refuses: its writer decides (and raises
        # its own error). Everything the fast path changed in ds, save_as changes too.
        if _unknown_sop(ds):
            return _encode_lenient(ds)
        return _encode_with_pydicom(ds)


def _unknown_sop(ds: Dataset) -> bool:
    """No SOP Class, or no SOP Instance UID, in the meta nor the data set (looked up without
    converting anything, so a data set pydicom then writes is left as save_as leaves it)."""
    meta = ds.__dict__.get("file_meta")
    if not isinstance(meta, FileMetaDataset):
        return False
    return any(not _raw_text(elements(meta).get(in_meta))  # type: ignore[call-overload]
               and not _raw_text(elements(ds).get(in_ds))  # type: ignore[call-overload]
               for in_meta, in_ds in ((0x00020002, 0x00080016), (0x00020003, 0x00080018)))


def _raw_text(elem: Any) -> bool:
    """Whether an element (raw or converted) holds a non-empty value."""
    if elem is None:
        return False
    value = elem.value
    if isinstance(value, bytes):
        return bool(value.strip(b" \0"))
    return bool(value) and bool(str(value).strip(" \0"))


def _encode_lenient(ds: Dataset) -> bytes:
    preamble = getattr(ds, "preamble", None)
    if not preamble or len(preamble) != 128:
        ds.preamble = _ZERO_PREAMBLE
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _encode_with_pydicom(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


_SYNTAXES: dict[str, bool] = {}
"""Transfer Syntax UID -> implicit VR, for the syntaxes the fast path writes."""


def _implicit_for(tsyntax: object) -> bool:
    """Whether ``tsyntax`` is implicit VR; raises _OffPath unless it is a public little
    endian transfer syntax other than deflate (those are all the fast path knows)."""
    if type(tsyntax) is not UID:
        raise _OffPath("transfer syntax")
    try:
        return _SYNTAXES[tsyntax]
    except KeyError:
        pass
    if (tsyntax.is_private or not tsyntax.is_transfer_syntax or not tsyntax.is_little_endian
            or tsyntax == DeflatedExplicitVRLittleEndian):
        raise _OffPath("transfer syntax") from None
    _SYNTAXES[str(tsyntax)] = implicit = bool(tsyntax.is_implicit_VR)
    return implicit


_PYDICOM_DATASETS = frozenset({Dataset, FileDataset, FileMetaDataset})
"""Dataset classes whose keyword attributes are exactly their elements (no overrides)."""


def _keyword_is_element(ds: Dataset, keyword: str) -> bool:
    """Whether ``ds.<keyword>`` is exactly the element of that keyword (pydicom's own dataset
    classes, with no instance attribute of that name): then it may be read by tag."""
    return type(ds) in _PYDICOM_DATASETS and keyword not in ds.__dict__


def _has(ds: Dataset, keyword: str, tag: int) -> bool:
    """``keyword in ds``, by its tag."""
    if not _keyword_is_element(ds, keyword):
        return keyword in ds
    return tag in elements(ds)


def _meta_copy(meta: FileMetaDataset) -> FileMetaDataset:
    """A copy of ``meta`` to complete and write, what ``dcmwrite``'s deepcopy is for.

    Elements are shared, not copied: :func:`_set_meta` replaces an element instead of
    assigning to it, and conversions (``copy[tag]``) only replace entries of the copy's dict.
    """
    return compat.shallow_copy(meta)


def _set_meta(meta: FileMetaDataset, keyword_tag: int, value: Any) -> None:
    """``meta.<keyword> = value`` as ``Dataset.__setattr__`` does it, on a copy of the element
    (the original may be shared with the dataset's own file meta)."""
    tag = BaseTag(keyword_tag)
    if tag in elements(meta):
        elem = copy.copy(meta[tag])
        elem.value = value
    else:
        elem = DataElement(tag, dictionary_VR(tag), value)
    elements(meta)[tag] = elem


_CONVERTED: dict[tuple[int, str, bytes], DataElement] = {}
"""Raw file meta element -> its conversion, for the elements every file of a run shares
(version, implementation UID): converting them was a tenth of the encoding time."""
_MEMO_VRS = frozenset({"OB", "UI"})  # converted the same whatever pydicom's settings


def _meta_elem(meta: FileMetaDataset, tag: int) -> DataElement:
    """``meta[tag]`` on the copy (which converts a raw element), memoised for non-empty
    OB/UI values. The shared result is never assigned to (:func:`_set_meta` copies)."""
    raw = elements(meta)[tag]  # type: ignore[index]
    if type(raw) is DataElement:
        return raw  # what meta[tag] gives for an element already converted
    if type(raw) is not RawDataElement or raw.VR not in _MEMO_VRS or not raw.value or not compat.stock_conversion():
        return meta[tag]
    key = (raw.tag, raw.VR, raw.value)
    elem = _CONVERTED.get(key)
    if elem is None:
        elem = meta[tag]
        if len(_CONVERTED) < 256 and _valid(raw.VR, elem.value):
            # Only values whose conversion cannot warn: an invalid UID warns on every read.
            _CONVERTED[key] = elem
    else:
        elements(meta)[raw.tag] = elem
    return elem


def _valid(vr: str, value: Any) -> bool:
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        return False
    return True


def _meta_get(meta: FileMetaDataset, tag: int) -> DataElement | None:
    """The element at ``tag`` of the copy, converted (:func:`_meta_elem`), or None."""
    return None if tag not in elements(meta) else _meta_elem(meta, tag)


def _meta_value(meta: FileMetaDataset, tag: int) -> Any:
    """``meta.get(<keyword>, None)``: the value, converting a raw element in the copy."""
    elem = _meta_get(meta, tag)
    return None if elem is None else elem.value


_PLAIN_VALUES = frozenset({str, UID, bytes})


def _meta_missing(meta: FileMetaDataset, tag: int) -> bool:
    """``<keyword> not in meta or meta[<keyword>].is_empty``, as validate_file_meta asks."""
    elem = _meta_get(meta, tag)
    if elem is None:
        return True
    if type(elem) is DataElement and type(stored_value(elem)) in _PLAIN_VALUES and elem.VR != "SQ":
        return not stored_value(elem)  # is_empty for a str or bytes value: VM 0 when it is empty
    return bool(elem.is_empty)


def _complete_meta(meta: FileMetaDataset, ds: Dataset) -> None:
    """What ``dcmwrite(enforce_file_format=True)`` and ``validate_file_meta`` do to the copy
    of the file meta: media UIDs from the dataset, version and implementation filled in."""
    meta_class = _meta_value(meta, 0x00020002)
    ds_class = compat.keyword_value(ds, "SOPClassUID", 0x00080016)
    if meta_class is None or (ds_class and ds_class != meta_class):
        _set_meta(meta, 0x00020002, ds_class)
    meta_instance = _meta_value(meta, 0x00020003)
    ds_instance = compat.keyword_value(ds, "SOPInstanceUID", 0x00080018)
    if meta_instance is None or (ds_instance and ds_instance != meta_instance):
        _set_meta(meta, 0x00020003, ds_instance)
    if any(tag >> 16 != 2 for tag in elements(meta)):
        raise _OffPath("file meta with other groups")
    if _meta_missing(meta, 0x00020001):
        _set_meta(meta, 0x00020001, b"\x00\x01")
    if _meta_missing(meta, 0x00020012):
        _set_meta(meta, 0x00020012, UID(PYDICOM_IMPLEMENTATION_UID))
    if 0x00020013 not in elements(meta):
        _set_meta(meta, 0x00020013, _IMPLEMENTATION_VERSION)
    if any(_meta_missing(meta, tag) for tag in (0x00020002, 0x00020003, 0x00020010)):
        raise _OffPath("required file meta missing")  # pydicom raises


def _encode(ds: Dataset) -> bytes:
    """The steps of ``Dataset.save_as`` and ``dcmwrite`` for enforce_file_format=True."""
    if not isinstance(ds, Dataset):
        raise _OffPath("not a dataset")
    tags = sorted(elements(ds), key=int)
    if tags and tags[0] < 0x00030000 and any(t >> 16 in (0, 2) for t in tags):
        raise _OffPath("command or file meta elements in the dataset")
    original_meta = ds.__dict__.get("file_meta")
    if not isinstance(original_meta, FileMetaDataset):
        raise _OffPath("no file meta")
    little = ds.original_encoding[1]
    if little is not None:
        # save_as reads the transfer syntax from the dataset's own file meta first.
        compat.keyword_value(original_meta, "TransferSyntaxUID", 0x00020010)
        if not little:
            raise _OffPath("big endian dataset")
    meta = _meta_copy(original_meta)
    tsyntax = _meta_value(meta, 0x00020010)
    implicit = _implicit_for(tsyntax)
    preamble = getattr(ds, "preamble", None)
    if preamble and len(preamble) != 128:
        raise _OffPath("preamble length")
    _complete_meta(meta, ds)
    if not preamble:
        preamble = _ZERO_PREAMBLE
    if _has(ds, "PixelData", _PIXEL_DATA):
        ds[_PIXEL_DATA].is_undefined_length = tsyntax.is_compressed

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.write(preamble)
    fp.write(b"DICM")
    _write_meta(fp, meta)
    fp.is_implicit_VR = implicit
    _write_dataset(fp, ds, default_encoding, implicit, tags)
    return fp.getvalue()


def _write_meta(fp: DicomBytesIO, meta: FileMetaDataset) -> None:
    """``write_file_meta_info(fp, meta, enforce_standard=True)`` once the meta is complete."""
    if 0x00020000 not in elements(meta):
        _set_meta(meta, 0x00020000, 0)
    fp.is_implicit_VR = False
    start = fp.tell()
    _write_dataset(fp, meta, default_encoding, False)
    end = fp.tell()
    length = end - start - 12
    elem = elements(meta)[0x00020000]  # type: ignore[index]
    fp.seek(start)
    if (type(elem) is DataElement and elem.VR == "UL" and not elem.is_undefined_length
            and 0 <= length <= 0xFFFFFFFF):
        # The bytes _set_meta and _write_element give for it: an explicit UL of the length.
        # (What _set_meta would change is the copy, which is dropped after the write.)
        fp.write(_GROUP_LENGTH + _UL.pack(length))
    else:
        _set_meta(meta, 0x00020000, length)
        _write_element(fp, meta[0x00020000], default_encoding, _encodings(default_encoding),
                       False)
    if fp.tell() != start + 12:
        raise _OffPath("group length element")
    fp.seek(end)


_ENCODINGS: dict[Any, list[str]] = {}


def _encodings(dataset_encoding: Any) -> list[str]:
    """``convert_encodings(dataset_encoding or [default_encoding])`` as pydicom calls it for
    every element; computed once per charset, and only for charsets it converts silently."""
    value = dataset_encoding or [default_encoding]
    key = value if isinstance(value, str) else tuple(value)
    try:
        return list(_ENCODINGS[key])  # a copy: the cached list must not change
    except (KeyError, TypeError):
        pass
    names = [key] if isinstance(key, str) else list(key)
    if not all(isinstance(n, str) and n in _QUIET_CHARSETS for n in names):
        raise _OffPath("character set")
    if len(names) > 1 and any(n in _STAND_ALONE for n in names):
        raise _OffPath("character set")
    converted = convert_encodings(value)
    if len(_ENCODINGS) < 256:
        _ENCODINGS[key] = converted
    return list(converted)


def _write_dataset(fp: DicomBytesIO, ds: Dataset, parent_encoding: Any, implicit: bool,
                   tags: Sequence[int] | None = None) -> None:
    """``filewriter.write_dataset`` for a little endian ``fp``."""
    get_item: Any = elements(ds).__getitem__
    # Without a Specific Character Set (most items, the file meta), character_set(ds) is
    # the parent's encoding and ds.get("SpecificCharacterSet", ...) the default: both are
    # known without their lookups (for pydicom's own classes; others may override them).
    inherited = _keyword_is_element(ds, "SpecificCharacterSet") and 0x00080005 not in elements(ds)
    current = compat.parent_encoding(ds) if inherited else character_set(ds)
    if (implicit, True) != ds.original_encoding or ds.original_character_set != current:
        if not _nothing_to_correct(ds):
            ds = correct_ambiguous_vr(ds, True)
            get_item = ds.__getitem__
        tags = None
    dataset_encoding = (parent_encoding if inherited
                        else ds.get("SpecificCharacterSet", parent_encoding))
    # pydicom converts the charset names again for every converted element; once is enough
    # (and a charset it would warn about goes to pydicom, so the warnings stay the same).
    encodings = _encodings(dataset_encoding)
    write = fp.write
    for tag in sorted(elements(ds), key=int) if tags is None else tags:
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # retired group lengths are not written
        elem = get_item(tag)
        if type(elem) is RawDataElement:
            if elem[3] is not None:
                _write_raw(write, elem, implicit)
                continue
            elem = ds[tag]  # as get_item does for a value not kept (empty implicit, deferred)
        _write_element(fp, elem, dataset_encoding, encodings, implicit)


def _nothing_to_correct(ds: Dataset) -> bool:
    """Whether ``correct_ambiguous_vr(ds)`` would return ``ds`` untouched and every
    ``ds[tag]`` give the element as it is: all converted, none a sequence or ambiguous.
    (A new dataset, such as an item made by the stamp, is never in its "original encoding",
    so pydicom runs the correction on it; most hold nothing it could change.)"""
    if type(ds) not in _PYDICOM_DATASETS:
        return False  # its own elements() or __getitem__ may do more
    for elem in elements(ds).values():
        if type(elem) is not DataElement or elem.VR == "SQ" or elem.VR in AMBIGUOUS_VR:
            return False
    return True


def _write_element(fp: DicomBytesIO, elem: DataElement | RawDataElement, dataset_encoding: Any,
                   encodings: list[str], implicit: bool) -> None:
    """``filewriter.write_data_element``: raw values copied, converted ones encoded by
    pydicom's value writers; anything unusual is handed to write_data_element itself."""
    write = fp.write
    cls = type(elem)
    if cls is RawDataElement:
        _write_raw(write, elem, implicit)  # type: ignore[arg-type]
        return
    if cls is not DataElement:
        if isinstance(elem, RawDataElement):
            raise _OffPath("raw element subclass")
        write_data_element(fp, elem, dataset_encoding)
        return
    vr = elem.VR
    if vr == "SQ":
        _write_sequence(fp, elem, encodings, implicit)  # type: ignore[arg-type]
        return
    value = stored_value(elem)
    value_type = type(value)
    try:
        kind, info, fast = PLANS[(vr, value_type)]  # type: ignore[index]
    except KeyError:
        kind, info, fast = plan(vr, value_type)  # type: ignore[arg-type]
    if (kind == OTHER or info is None or elem.is_undefined_length  # type: ignore[union-attr]
            or (not implicit and info[3] is None)):
        write_data_element(fp, elem, dataset_encoding)
        return
    fn, param, charset, vr_bytes, long = info
    tag = elem.tag
    if kind == NONE or (kind == TRUTHY or kind == SIZED) and not value:
        data: bytes | None = b""
    else:
        data = None if fast is None else fast(value, param, encodings)
    if data is not None:
        # Encoded here, as pydicom's writer would (see :mod:`.valuebytes`): header with the length, then
        # the value, with no buffer to seek back into.
        n = len(data)
        if implicit:
            write(_TAG_UL.pack(tag >> 16, tag & 0xFFFF, n))
        elif long:
            write(_TAG_VR_UL.pack(tag >> 16, tag & 0xFFFF, vr_bytes, n))
        elif n <= 0xFFFF:
            write(_TAG_VR_US.pack(tag >> 16, tag & 0xFFFF, vr_bytes, n))
        else:
            write_data_element(fp, elem, dataset_encoding)  # pydicom makes it UN (and warns)
            return
        write(data)
        return
    pos = fp.tell()
    if implicit:
        write(_TAG_UL.pack(tag >> 16, tag & 0xFFFF, 0))
        long = True
    elif long:
        write(_TAG_VR_UL.pack(tag >> 16, tag & 0xFFFF, vr_bytes, 0))
    else:
        write(_TAG_VR_US.pack(tag >> 16, tag & 0xFFFF, vr_bytes, 0))
    if not (kind == NONE or (kind == TRUTHY or kind == SIZED) and not value):
        if charset:
            fn(fp, elem, encodings=encodings)
        elif param is not None:
            fn(fp, elem, param)
        else:
            fn(fp, elem)
    end = fp.tell()
    if long:
        n = end - pos - (8 if implicit else 12)
        fp.seek(end - n - 4)
        write(_UL.pack(n))
    else:
        n = end - pos - 8
        if n > 0xFFFF:
            # Too long for a 16-bit length: pydicom writes it as UN (and warns).
            fp.seek(pos)
            fp.parent.truncate()  # type: ignore[union-attr]
            write_data_element(fp, elem, dataset_encoding)
            return
        fp.seek(end - n - 2)
        write(_US.pack(n))
    fp.seek(end)



def _write_raw(write: Any, elem: RawDataElement, implicit: bool) -> None:
    """A raw element as read: its bytes behind a new header (what pydicom does with them)."""
    tag, vr, length, value = elem[0], elem[1], elem[2], elem[3]
    if value is None:
        raise _OffPath("no value")  # pragma: no cover - converted by _write_dataset
    if length == _UNDEFINED:
        if tag == _PIXEL_DATA and value[:4] != _ITEM_TAG:
            raise _OffPath("pixel data not encapsulated")  # pydicom raises
        if implicit:
            write(_TAG_UL.pack(tag >> 16, tag & 0xFFFF, _UNDEFINED))
        elif vr in LONG_VRS:
            write(_TAG_VR_UL.pack(tag >> 16, tag & 0xFFFF, vr.encode(), _UNDEFINED))
        else:
            raise _OffPath("undefined length")
        write(value)
        write(_SEQ_DELIMITER)
        return
    n = len(value)
    if implicit:
        write(_TAG_UL.pack(tag >> 16, tag & 0xFFFF, n))
    elif vr in LONG_VRS:
        write(_TAG_VR_UL.pack(tag >> 16, tag & 0xFFFF, vr.encode(), n))
    elif vr is not None and len(vr) == 2 and n <= 0xFFFF:
        write(_TAG_VR_US.pack(tag >> 16, tag & 0xFFFF, vr.encode(), n))
    else:
        raise _OffPath("raw element header")
    write(value)


def _write_sequence(fp: DicomBytesIO, elem: DataElement, encodings: list[str],
                    implicit: bool) -> None:
    """A converted SQ element: header, items (``write_sequence_item``), delimiter."""
    write = fp.write
    tag = elem.tag
    undefined = elem.is_undefined_length
    if implicit:
        write(_TAG_UL.pack(tag >> 16, tag & 0xFFFF, _UNDEFINED))
    else:
        write(_TAG_VR_UL.pack(tag >> 16, tag & 0xFFFF, b"SQ", _UNDEFINED))
    head = fp.tell()
    if not elem.is_empty:
        for item in elem.value:
            write(_ITEM_TAG)
            write(_UL.pack(_UNDEFINED))
            start = fp.tell()
            _write_dataset(fp, item, encodings, implicit)
            if getattr(item, "is_undefined_length_sequence_item", False):
                write(_ITEM_DELIMITER)
            else:
                end = fp.tell()
                fp.seek(start - 4)
                write(_UL.pack(end - start))
                fp.seek(end)
    if undefined:
        write(_SEQ_DELIMITER)
    else:
        end = fp.tell()
        fp.seek(head - 4)
        write(_UL.pack(end - head))
        fp.seek(end)
