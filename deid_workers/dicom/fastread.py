"""Parse a small, well-formed Part-10 file from memory at a fraction of ``dcmread``'s cost.

Every file is read three times in ``--action all`` and ``dcmread`` is most of each read: it
pulls each element through a generator, a file object and several checks written for damaged
or unusual files. Most files are not unusual: a preamble, "DICM", an explicit VR file meta,
then an Explicit or Implicit VR Little Endian data set of defined-length elements that fills
the file exactly. For those :func:`parse_part10` walks the bytes with one ``unpack_from`` per
element and builds the same objects ``dcmread`` builds, through pydicom's own constructors and
the same conversions it makes while reading (the file meta's first element and transfer
syntax, the Specific Character Set), so the dataset is the one ``dcmread`` returns.

Anything else gives None and the caller reads the file as before, so a refusal costs a little
time and never a different result: big endian, deflated or compressed transfer syntaxes, no
transfer syntax, undefined lengths, a value or header running past the end, bytes left over,
tags out of order, an unknown VR, item tags at the top level, a command set, a file meta whose
group length is wrong or that pydicom would re-read as implicit VR, and anything that raises.
It also refuses what :func:`deid_workers.dicom.reader.read_dataset` would reject (no data set), so
an accepted file needs none of its truncation checks, only the sequence checks.

Those checks convert every sequence, which pydicom does through the same generator:
:func:`convert_sequence` converts a plain defined-length one (defined-length, non-empty items
that their elements fill exactly) the same way as the top level, and leaves others to pydicom.
Datasets are made from the attributes pydicom's constructors set
(:func:`~deid_workers.dicom.compat.new_dataset`), and every refusal, conversion and object is
checked against dcmread by tests/dicom/test_fastread.py.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from io import BytesIO
from itertools import islice
from struct import Struct

from pydicom.charset import default_encoding, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from . import compat

__all__ = ["convert_sequence", "parse_headers", "parse_part10"]

_EXPLICIT = Struct("<HH2sH").unpack_from
_IMPLICIT = Struct("<HHL").unpack_from
_LONG = Struct("<L").unpack_from
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_GROUP_LENGTH = 0x00020000
_TRANSFER_SYNTAX = 0x00020010
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""The tags ``stop_before_pixels`` stops at (float, double float and plain pixel data)."""
_FIRST_PIXEL_TAG = min(_PIXEL_TAGS)
_ITEM_GROUP = 0xFFFE0000
"""Item and delimiter tags (FFFE,xxxx): at the top level they mean undefined lengths or
damage, both left to dcmread."""

_VRS: dict[bytes, tuple[str, bool]] = {
    vr.value.encode("ascii"): (vr.value, vr in EXPLICIT_VR_LENGTH_32)
    for vr in VR
    if len(vr.value) == 2
}
"""Explicit VR bytes -> (VR as dcmread stores it, has a 4-byte length). dcmread reads other
VR bytes as an implicit VR switch or an unknown VR; both are refused."""

def _tag(tag: int) -> BaseTag:
    """The BaseTag of ``tag``, shared between files (tags are immutable ints): building
    one is a Python call per element, and a few hundred tags cover most files."""
    btag = _TAGS.get(tag)
    if btag is None:
        btag = BaseTag(tag)
        if len(_TAGS) < _TAGS_MAX:
            _TAGS[tag] = btag
    return btag


_TAGS: dict[int, BaseTag] = {}
_TAGS_MAX = 4096
_new_raw = tuple.__new__
"""RawDataElement is a NamedTuple: its generated ``__new__`` fills defaults in Python; the
tuple is built directly instead, with every field given (is_raw=True, is_buffered=False)."""


def _elements(
    data: bytes, pos: int, implicit: bool, meta: bool, end: int | None = None,
    stop_at_pixels: bool = False,
) -> tuple[dict[BaseTag, RawDataElement], int, int] | None:
    """The raw elements from ``pos`` as dcmread's element generator yields them, where they
    end and how many come before pixel data; None at anything it would read differently or
    that ends short.

    ``meta``: read the file meta (explicit VR), stopping before the first tag of another
    group, as dcmread does; otherwise read to ``end`` (default: the end of ``data``), which
    the last element must end at exactly. ``stop_at_pixels``: stop at the header of the first
    pixel data element instead (what ``stop_before_pixels`` reads), returning where it starts.
    """
    elements: dict[BaseTag, RawDataElement] = {}
    if end is None:
        end = len(data)
    last = -1
    before_pixels = -1
    vrs = _VRS
    tags = _TAGS
    raw_type = RawDataElement
    while pos < end:
        if end - pos < 8:
            return None  # dcmread stops silently before a short header: a cut file
        header = pos
        if implicit:
            group, elem, length = _IMPLICIT(data, pos)
            vr = None
            start = pos + 8
        else:
            group, elem, raw_vr, length = _EXPLICIT(data, pos)
            if meta and group != 2:
                break
            known = vrs.get(raw_vr)
            if known is None:
                return None
            vr, long = known
            start = pos + 8
            if long:
                if end - start < 4:
                    return None
                (length,) = _LONG(data, start)
                start += 4
        tag = group << 16 | elem
        # In order (no duplicate, no file meta or command set element in the data set) and
        # no item tags, whose meaning depends on an undefined length.
        if tag <= last or tag >= _ITEM_GROUP or length == _UNDEFINED:
            return None
        last = tag
        if tag >= _FIRST_PIXEL_TAG and before_pixels < 0 and tag in _PIXEL_TAGS:
            before_pixels = len(elements)
            if stop_at_pixels:  # its whole header was read above, as dcmread reads it
                return elements, header, before_pixels
        pos = start + length
        if pos > end:
            return None
        btag = tags.get(tag)
        if btag is None:
            btag = _tag(tag)
        value: object
        if length:
            value = data[start:pos]
        else:
            value = empty_value_for_VR(vr, raw=True)  # as dcmread (b"" or None, by VR)
        elements[btag] = _new_raw(
            raw_type, (btag, vr, length, value, start, implicit, True, True, False)
        )
    return elements, pos, before_pixels if before_pixels >= 0 else len(elements)


_DATASET_STATE = compat.constructor_state(Dataset())
_META_STATE = compat.constructor_state(FileMetaDataset())
_FILE_STATE = compat.constructor_state(FileDataset(BytesIO(), {}, None, FileMetaDataset(), True, True))
"""The attributes pydicom's constructors give a new dataset (a FileDataset: of a buffer,
little endian), taken once from the constructors themselves."""
_USE_FUTURE = compat.future_api()
"""The constructors set other attributes when this pydicom setting changes: then the real
constructors are left to dcmread (parse_part10 and convert_sequence give None)."""

def _file_meta(data: bytes) -> tuple[FileMetaDataset, int] | None:
    """The file meta as dcmread leaves it (first element and TransferSyntaxUID converted),
    and where the data set starts."""
    parsed = _elements(data, 132, False, True)
    if parsed is None or not parsed[0]:
        return None
    raw, ds_start, _ = parsed
    # dcmread reads the header after the file meta as explicit VR, plus 4 bytes for a long
    # VR, then twice more as implicit VR (command set, transfer syntax sniffing): ask for 12
    # bytes so none of those reads can end short.
    if len(data) - ds_start < 12:
        return None
    # FileMetaDataset(raw) (all group 2, as validate checks), then set_original_encoding.
    file_meta = compat.new_dataset(FileMetaDataset, _META_STATE, {
        compat.ELEMENTS: raw, compat.READ_IMPLICIT: False, compat.READ_LITTLE: True,
        compat.READ_CHARSET: default_encoding,
    })
    first = next(iter(raw))
    file_meta[first]  # dcmread converts the first element to test the encoding
    # Tags are in order, so a group length is the first element. A wrong one is logged by
    # dcmread: left to dcmread.
    if first == _GROUP_LENGTH and compat.elements(file_meta)[first].value != ds_start - 144:
        return None
    return file_meta, ds_start


def _syntax(file_meta: FileMetaDataset) -> str | None:
    """The transfer syntax, converted in place as dcmread's ``file_meta.get`` does."""
    tag = _tag(_TRANSFER_SYNTAX)
    return file_meta[tag].value if tag in compat.elements(file_meta) else None


_QUIET: dict[tuple[str | None, bytes], bool] = {}


def _quiet_charset(raw: RawDataElement) -> bool:
    """Whether dcmread takes this Specific Character Set without a warning.

    An unknown, misspelt or misplaced term makes pydicom warn (and log); such files are left
    to dcmread so that the warnings are its own. Known terms are asked of pydicom's table
    once per value and process (a few distinct values in practice, the cache is bounded).
    """
    key = (raw.VR, raw.value or b"")
    quiet = _QUIET.get(key)
    if quiet is None:
        value = convert_raw_data_element(raw).value
        terms = [value] if isinstance(value, str) else list(value or [""])
        if len(terms) > 1:
            # ISO 2022 code extensions only: a stand-alone term in a list warns.
            terms[0] = terms[0] or "ISO_IR 6"
            quiet = all(t.startswith("ISO 2022 IR ") or t == "ISO_IR 6" for t in terms)
        else:
            quiet = True
        quiet = quiet and all(t in python_encoding for t in terms)
        if len(_QUIET) < 256:
            _QUIET[key] = quiet
    return quiet


def parse_part10(data: bytes, *, headers_only: bool) -> FileDataset | None:
    """What ``dcmread(BytesIO(data), stop_before_pixels=headers_only)`` returns, or None when
    ``data`` is not the plain kind of file this parser proves it reads the same way (the
    caller then uses dcmread). Also None for an empty data set."""
    parsed = _parse(data, headers_only, prefix=False)
    return None if parsed is None else parsed[0]


def parse_headers(prefix: bytes) -> tuple[FileDataset, int] | None:
    """From the first bytes of a bigger file: what ``dcmread(file, stop_before_pixels=True)``
    returns, and where the pixel data element it stops before starts (its header lies inside
    ``prefix``); None when the headers do not end at a pixel element inside ``prefix`` or are
    not of the plain kind :func:`parse_part10` reads.

    dcmread reads nothing after that header, so the bytes beyond ``prefix`` cannot change
    the result; the caller still checks the pixel element's length against the file size.
    """
    return _parse(prefix, True, prefix=True)


def _parse(data: bytes, headers_only: bool, prefix: bool) -> tuple[FileDataset, int] | None:
    if len(data) < 144 or data[128:132] != b"DICM" or compat.future_api() != _USE_FUTURE:
        return None
    try:
        meta = _file_meta(data)
        if meta is None:
            return None
        file_meta, ds_start = meta
        syntax = _syntax(file_meta)
        if syntax == ImplicitVRLittleEndian:
            implicit = True
            # dcmread warns and switches when the first element looks explicit (its length
            # bytes are two capital letters).
            if 0x40 < data[ds_start + 4] < 0x5B and 0x40 < data[ds_start + 5] < 0x5B:
                return None
        elif syntax == ExplicitVRLittleEndian:
            implicit = False
        else:
            return None
        parsed = _elements(data, ds_start, implicit, False, stop_at_pixels=prefix)
        if parsed is None:
            return None
        raw, stop, before_pixels = parsed
        if prefix and stop >= len(data):
            return None  # no pixel element inside the prefix: the headers may go on
        if headers_only and before_pixels < len(raw):
            # dcmread stops before the first pixel data element; tags are in order, so the
            # elements it leaves out are the last ones.
            raw = dict(islice(raw.items(), before_pixels))
        if not raw:
            return None
        charset = raw.get(_CHARSET)  # type: ignore[call-overload]
        if charset is not None and not _quiet_charset(charset):
            return None
        # dcmread builds a Dataset on the same dict first; all it does that lasts is convert
        # (0008,0005) in that dict, which the character set lookup does here (that tag's conversion
        # uses neither the dataset's encoding nor its other elements).
        # FileDataset(BytesIO(data), raw, data[:128], file_meta, implicit, True)
        values = {compat.ELEMENTS: raw, "preamble": data[:128], "file_meta": file_meta,
                  "buffer": BytesIO(data), compat.READ_IMPLICIT: implicit}
        if "_is_implicit_VR" in _FILE_STATE[0]:  # pydicom 3 keeps it until v4
            values["_is_implicit_VR"] = implicit
        ds = compat.new_dataset(FileDataset, _FILE_STATE, values)
        ds.set_original_encoding(implicit, True, compat.character_set(ds))
    except Exception:  # noqa: BLE001 - anything unexpected is dcmread's to judge
        return None
    return ds, stop


_ITEM = 0xFFFEE000


def _items(
    value: bytes, implicit: bool, encodings: MutableSequence[str], offset: int
) -> Sequence | None:
    """What pydicom's ``convert_SQ`` returns for the defined-length sequence ``value``, when
    every item is a non-empty, defined-length item whose elements fill it exactly; else None.

    Empty items are left to pydicom: it guesses their VR encoding from the bytes after them.
    So are items with their own Specific Character Set.
    """
    items = []
    pos = 0
    end = len(value)
    while pos < end:
        if end - pos < 8:
            return None
        group, elem, length = _IMPLICIT(value, pos)
        if group << 16 | elem != _ITEM or length == _UNDEFINED or not length:
            return None
        parsed = _elements(value, pos + 8, implicit, False, pos + 8 + length)
        if parsed is None or _CHARSET in parsed[0]:
            return None
        # As pydicom's read_sequence_item and read_dataset build an item: Dataset(raw,
        # parent_encoding=encodings), set_original_encoding, then where it starts.
        item = compat.new_dataset(Dataset, _DATASET_STATE, {
            compat.PARENT_ENCODING: encodings, compat.ELEMENTS: parsed[0],
            compat.READ_IMPLICIT: implicit, compat.READ_LITTLE: True, compat.READ_CHARSET: encodings,
            "seq_item_tell": pos + offset,
            "file_tell": pos + offset,
        })
        items.append(item)
        pos = parsed[1]
    sequence = Sequence(items)
    sequence.is_undefined_length = False
    return sequence


def convert_sequence(ds: Dataset, tag: BaseTag) -> DataElement | None:
    """Convert the raw sequence ``ds[tag]`` (``tag`` a key of ``compat.elements(ds)``) in place as
    ``ds[tag]`` would, and return it; or do nothing and return None when it is not a plain
    defined-length little endian sequence with the stock conversion hooks.

    Converting a sequence is most of what checking a header costs after parsing: pydicom
    reads the items through a file object and its element generator. Here the items are
    parsed like the top level, and the DataElement is built, stored and given its pixel
    representation by pydicom's own code, as ``Dataset.__getitem__`` does.
    """
    raw = compat.elements(ds)[tag]
    if (
        not isinstance(raw, RawDataElement)
        or not raw.value  # empty, or deferred
        or raw.length == _UNDEFINED
        or not raw.is_little_endian
    ):
        return None
    vr = raw.VR
    if vr is None and not tag.is_private:
        vr = _dictionary_vr(tag)
    if vr != VR.SQ or not compat.stock_conversion() or compat.future_api() != _USE_FUTURE:
        return None
    # Dataset.__getitem__ and convert_value: the encodings the items inherit.
    encodings = ds.original_character_set or compat.character_set(ds)
    encodings = encodings or [default_encoding]
    if isinstance(encodings, str):
        encodings = [encodings]
    try:
        sequence = _items(raw.value, raw.is_implicit_VR, encodings, raw.value_tell)
    except Exception:  # noqa: BLE001 - pydicom's conversion decides
        return None
    if sequence is None:
        return None
    # Stored by Dataset.__setitem__, which also gives the items their pixel representation;
    # __getitem__ then does that once more, to the same effect (the same values are read
    # and written again), so it is not repeated here.
    ds[tag] = DataElement(raw.tag, vr, sequence, raw.value_tell, False, already_converted=True)
    return compat.elements(ds)[tag]  # type: ignore[return-value]


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
