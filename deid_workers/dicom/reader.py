"""Read one DICOM file, or say shortly why not.

Reading: pydicom is lenient, which is right for values but wrong for triage: it silently accepts
a file cut in the middle of an element, and with ``force=True`` it "reads" any text file. So
:func:`read_dataset` adds the checks a pipeline needs and turns every failure into an
:class:`~deid_workers.errors.InputError` whose reason is one of a few fixed, worded phrases
(:data:`REASONS`, from :mod:`deid_workers.reasons`) that never contain a header value, because
reasons go to logs and reports. A media index (DICOMDIR) is refused the same way: it is no
image to de-identify, and copying it would carry the original names, IDs and paths.

Where the file meta and the bytes disagree on the encoding (the meta says Explicit VR, the data
set is Implicit VR, or the other way round), pydicom reads the bytes as they are but reports
the meta's encoding; :func:`read_dataset` corrects ``original_encoding`` to what was read, so
the output is written from what the bytes are (:mod:`deid_workers.files.filemeta` then makes the
meta agree).
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import warnings
from io import BytesIO
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.values import converters

from ..config import DEFAULT_MAX_FILE_BYTES
from ..errors import InputError
from ..fs.paths import LINK_ERRNOS, beneath, open_no_follow
from ..reasons import (
    CORRUPT,
    EMPTY,
    LINK,
    MEDIA_INDEX,
    MISSING,
    NOT_DICOM,
    NOT_REGULAR,
    OUTSIDE,
    PERMISSION,
    SKIP_REASONS,
    SPARSE,
    TOO_LARGE,
)
from . import compat
from .fastread import convert_sequence, parse_headers, parse_part10

__all__ = ["REASONS", "is_media_index", "read_dataset"]

log = logging.getLogger(__name__)

REASONS = SKIP_REASONS
"""Every reason :func:`read_dataset` may give; reports group skipped files by these."""

SPARSE_MIN = 8 << 20
SPARSE_RATIO = 16
"""A file over ``SPARSE_MIN`` bytes whose allocated blocks hold less than 1/``SPARSE_RATIO`` of
its size is refused as sparse: its holes read as zeros, so a few KB on disk could make a
worker allocate its whole apparent size. A DICOM writer leaves no holes; the ratio leaves room
for filesystems that compress (a 16:1 compression of a real image is rare). A filesystem that
reports no blocks at all (some FUSE mounts) is not judged."""

_UNDEFINED = 0xFFFFFFFF
_EXPLICIT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)

_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())

def _looks_like_dicom_without_preamble(head: bytes) -> bool:
    """True when ``head`` starts like a DICOM data set: a group 0002/0008 tag and a sane VR.

    Some modalities and old PACS exports write the data set (or the file meta) with no
    128-byte preamble and no "DICM". deid skips those (it reads with force=False); we accept
    them, but only when the first element is a plausible one, because ``force=True`` alone
    turns any text file into an empty-looking "dataset" instead of an error.
    """
    if len(head) < 8:
        return False
    group, elem = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or elem > 0x0100:
        # Explicit VR Big Endian (retired, still found in old archives): pydicom reads it
        # with force=True, telling it by the byte order of the group.
        group, elem = struct.unpack(">HH", head[:4])
        return group == 0x0008 and elem <= 0x0100 and head[4:6] in _EXPLICIT_VRS
    if head[4:6] in _EXPLICIT_VRS:
        return True
    # Implicit VR little endian: a 4-byte length that fits a header element.
    (length,) = struct.unpack("<I", head[4:8])
    return length < 0x10000 or length == _UNDEFINED


class _ShortReadWatch:
    """File wrapper that notes a read returning some but not all requested bytes.

    pydicom ends a data set silently when fewer than 8 bytes are left for the next element
    header, so a file cut inside an element header would pass as complete. A partial read is
    the one sign of that. This wrapper costs a Python call per read and tell, so it is only
    the fallback of :func:`_sequential_end`, for the rare files whose layout does not tell.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.name = getattr(raw, "name", None)
        self.partial = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if size is not None and 0 < len(data) < size:
            self.partial = True
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _defined(elem: RawDataElement | DataElement) -> bool:
    """An element pydicom read with a defined length and did not parse as a sequence."""
    if isinstance(elem, RawDataElement):
        return elem.length != _UNDEFINED
    return elem.VR != "SQ" and not elem.is_undefined_length


def _sequential_end(ds: FileDataset, fp: BinaryIO, size: int, force: bool, warned: bool) -> int | None:
    """Where the last top-level element ends when the layout proves that pydicom read ``fp``
    (``size`` bytes) front to back with no read past that point but the header after it;
    None when it cannot tell (then :class:`_ShortReadWatch` replays the read).

    The proof: each of pydicom's ``read_dataset`` calls (file meta, command set, data set)
    reads its defined-length elements one after the other, and the data set's first element
    starts where the file meta ended. The exceptions pydicom swallows (an end of file inside
    an undefined length, an unknown VR in an item), after which it may seek back or go on
    from elsewhere, empty that call's elements and, for an end of file, warn: a warning, a
    sequence or undefined length at the top level, a command set, a file meta re-read as
    implicit VR, deflated data (another buffer) or a file under 132 bytes (the preamble read)
    are left to the replay. A swallowed error leaves the data set starting at least 8 bytes
    after the file meta, so the start check holds whichever header size (8 or 12) it had.
    """
    meta = ds.file_meta
    # Parsed from ``fp`` itself: FileDataset keeps a buffer it was given, not an open file;
    # deflated data is parsed from a buffer of its own.
    from_fp = ds.buffer is fp or ds.buffer is None
    if warned or not from_fp or size < 132 or meta.original_encoding[0]:
        return None
    meta_end: int | None = 0 if force else 132
    if compat.elements(meta):
        meta_end = _last_end(meta)
        if meta_end is None:
            return None
    first = last = None
    first_tell = last_tell = -1
    for elem in compat.elements(ds).values():
        if isinstance(elem, RawDataElement):
            if elem.length == _UNDEFINED:
                return None
            tell = elem.value_tell
        elif elem.VR == "SQ" or elem.is_undefined_length or elem.file_tell is None:
            return None
        else:
            tell = elem.file_tell
        if not elem.tag >> 16:  # a command set (group 0000); >> is int's, < would be Tag's
            return None
        if first is None or tell < first_tell:
            first, first_tell = elem, tell
        if tell > last_tell:
            last, last_tell = elem, tell
    if first is None or meta_end not in (first_tell - 8, first_tell - 12):
        return None
    if not isinstance(last, RawDataElement) or last_tell + last.length > size:
        return None
    return last_tell + last.length


def _last_end(ds: Dataset) -> int | None:
    """End of the last element of ``ds`` (all of defined length), or None."""
    last: RawDataElement | DataElement | None = None
    last_tell = -1
    for elem in compat.elements(ds).values():
        if not _defined(elem):
            return None
        tell = elem.value_tell if isinstance(elem, RawDataElement) else elem.file_tell
        if tell is None:
            return None
        if tell > last_tell:
            last, last_tell = elem, tell
    if not isinstance(last, RawDataElement):
        return None
    return last_tell + last.length


def _check_raw_lengths(ds: Dataset) -> None:
    """Raise EOFError if a top-level value was cut short (pydicom does not check)."""
    for tag in list(compat.elements(ds)):
        raw = compat.elements(ds)[tag]
        if isinstance(raw, RawDataElement) and raw.value is None:
            raw = ds[tag]  # what Dataset.get_item does with a value-less raw element
        if isinstance(raw, RawDataElement) and raw.value is not None and raw.length != _UNDEFINED:
            if len(raw.value) != raw.length:
                raise EOFError("value shorter than its declared length")


def _check_pixel_element(fp: BinaryIO, ds: Dataset, size: int) -> None:
    """After a headers-only read ``fp`` sits at the element pydicom stopped before (PixelData
    or a later one). Check its declared length fits in the file without reading the pixels."""
    here = fp.tell()
    if here >= size:
        return
    head = fp.read(12)
    if len(head) < 8:
        raise EOFError("element header cut short")
    implicit = ds.original_encoding[0]
    little = ds.original_encoding[1] in (None, True)
    fmt = "<" if little else ">"
    if implicit or head[4:6] not in _EXPLICIT_VRS:
        (length,) = struct.unpack(fmt + "I", head[4:8])
        start = here + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise EOFError("element header cut short")
        (length,) = struct.unpack(fmt + "I", head[8:12])
        start = here + 12
    else:
        (length,) = struct.unpack(fmt + "H", head[6:8])
        start = here + 8
    if length != _UNDEFINED and start + length > size:
        raise EOFError("pixel data shorter than its declared length")


_DICT_VRS: dict[int, str | None] = {}
_DICT_VRS_MAX = 4096
"""Cache of dictionary VRs (None: not in the dictionary) for implicit VR elements; bounded:
once full, further tags are looked up each time."""


def _dictionary_vr(tag: int) -> str | None:
    try:
        return _DICT_VRS[tag]
    except KeyError:
        pass
    try:
        vr: str | None = dictionary_VR(tag)
    except KeyError:
        vr = None
    if len(_DICT_VRS) < _DICT_VRS_MAX:
        _DICT_VRS[tag] = vr
    return vr


_PLAIN_VRS = frozenset(vr for vr in converters if vr not in ("SQ", "UN"))
"""Explicit VRs whose conversion never parses items (the common case of _may_be_sequence)."""


def _may_be_sequence(tag: int, raw: RawDataElement) -> bool:
    """Whether converting ``raw`` parses nested items (only those can hide more elements).

    Raises ValueError for a VR pydicom cannot convert (a damaged element header).
    """
    vr = raw.VR
    if vr is None:  # implicit VR: the dictionary decides; unknown/private may be SQ
        vr = _dictionary_vr(tag)
        if vr is None:
            return True
    if vr not in converters:
        raise ValueError("unknown value representation")
    return vr == "SQ" or (vr == "UN" and raw.length == _UNDEFINED)


def _check_elements(ds: Dataset, fast: bool = True) -> None:
    """Raise if an element at any depth was cut short, has an unknown VR, or is a damaged
    sequence, so such a file fails here, not in get_identifiers or a recipe.

    It looks at the raw elements and parses sequences only: converting every value (what a
    plain ``for elem in ds`` does) found nothing more and cost two thirds of a header read.
    """
    elements = compat.elements(ds)
    for tag in list(elements):
        # Fetched now, not listed before: converting a sequence also converts the
        # PixelRepresentation of its dataset, as Dataset.get_item would then return it.
        raw = elements[tag]
        if isinstance(raw, RawDataElement):
            value = raw.value
            if value is None:
                elem = ds[tag]  # what Dataset.get_item does with a value-less raw element
            else:
                if raw.length != _UNDEFINED and len(value) != raw.length:
                    raise EOFError("value shorter than its declared length")
                if raw.VR in _PLAIN_VRS or not _may_be_sequence(tag, raw):
                    continue
                # The same conversion as ds[tag], without pydicom's reader for plain items.
                converted = convert_sequence(ds, tag) if fast else None
                elem = converted if converted is not None else ds[tag]
        else:
            elem = raw
        if elem.VR == "SQ":
            for item in elem.value:
                _check_elements(item, fast)


_WHOLE_MAX = 64 * 1024
"""Files up to this size are read in one call and parsed from memory. Of a bigger file, a
headers-only read parses the first ``_WHOLE_MAX`` bytes, and the file itself only when the
headers do not end (at PixelData) well inside them."""


def _from_prefix(
    data: bytes, force: bool, caught: list[warnings.WarningMessage]
) -> tuple[FileDataset, BytesIO] | None:
    """The headers-only dataset parsed from the start ``data`` of a bigger file, or None when
    pydicom's reads may have depended on what lies beyond: then the caller parses the whole
    file."""
    fp = BytesIO(data)
    try:
        ds = dcmread(fp, stop_before_pixels=True, force=force)
    except Exception:  # noqa: BLE001 - the whole file decides what the error is
        return None
    end = _sequential_end(ds, fp, len(data), force, bool(caught))
    # pydicom stopped before an element header (PixelData) whose 12 bytes, all that it and
    # _check_pixel_element read of it, are inside ``data``: nothing before it ran short.
    if end is not None and fp.tell() == end and end + 12 <= len(data):
        return ds, fp
    return None


def _parse(
    fh: BinaryIO, size: int, headers_only: bool, caught: list[warnings.WarningMessage]
) -> FileDataset:
    """Parse the open file ``fh``; raise _NotDicom (from the first bytes), InvalidDicomError
    or any other exception (damaged).

    A file up to :data:`_WHOLE_MAX` bytes is parsed from memory: by
    :func:`~deid_workers.dicom.fastread.parse_part10` when the file is plain enough for it to give
    dcmread's dataset (most files, at half the cost), else by dcmread. A bigger one is parsed
    from the open file (no second copy of its pixels in memory), after trying its first bytes
    for a headers-only read (:func:`~deid_workers.dicom.fastread.parse_headers`, then dcmread).
    """
    data = fh.read(_WHOLE_MAX if size > _WHOLE_MAX else -1)
    head = data[:132]
    if len(head) == 132 and head[128:132] == b"DICM":
        force = False
    elif _looks_like_dicom_without_preamble(head):
        force = True
    else:
        raise _NotDicom
    if not compat.fast_io():
        return _parse_plain(fh, size, headers_only, force)
    fp: BinaryIO
    partial: bool | None = None
    in_memory = size <= _WHOLE_MAX or len(data) < _WHOLE_MAX
    if in_memory and not force:
        fast = parse_part10(data, headers_only=headers_only)
        if fast is not None and not caught:
            # The same dataset as below, from a file that fills its elements exactly (so
            # nothing is cut short, PixelData included) and has a data set. Left to check:
            # what converting may still reveal, nested items above all.
            return _last_checks(fast, None, size)
        del caught[:]  # dcmread warns again if it must
    elif headers_only and not force:
        headers = parse_headers(data)
        if headers is not None and not caught:
            # dcmread's headers-only dataset of the whole file, which it reads no further
            # than the pixel element's header, inside ``data``: left to check are its length
            # against the file's size and what converting may reveal.
            ds, stop = headers
            fp = BytesIO(data)
            fp.seek(stop)
            return _last_checks(ds, fp, size)
        del caught[:]
    if in_memory:
        fp = BytesIO(data)
        ds = dcmread(fp, stop_before_pixels=headers_only, force=force)
    else:
        parsed = _from_prefix(data, force, caught) if headers_only else None
        if parsed is not None:
            ds, fp = parsed
            partial = False
        else:
            del caught[:]  # the whole file is parsed again, with the same warnings
            fp = fh
            fp.seek(0)
            ds = dcmread(fp, stop_before_pixels=headers_only, force=force)
    if force and not ds.file_meta and "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise InvalidDicomError("no SOP class or instance after a forced read")
    if partial is None:
        length = len(data) if fp is not fh else os.fstat(fh.fileno()).st_size
        end = _sequential_end(ds, fp, length, force, bool(caught))
        if end is not None:
            partial = 0 < length - end < 8  # the header read after the last element
    if partial is None:
        del caught[:]  # the replay warns the same
        if fp is not fh:
            fp = BytesIO(data)
        fp.seek(0)
        watch = _ShortReadWatch(fp)
        watch.name = fh.name  # as when reading the file: pydicom puts it in messages
        ds = dcmread(watch, stop_before_pixels=headers_only, force=force)
        partial = watch.partial
    if partial:
        raise EOFError("file ends inside an element")
    if len(ds) == 0:
        raise EOFError("no data set after the file meta")
    return _last_checks(ds, fp if headers_only else None, size)


def _parse_plain(fh: BinaryIO, size: int, headers_only: bool, force: bool) -> FileDataset:
    """:func:`_parse` the plain way (``DEID_FAST_IO=0``, or a pydicom the fast reader was
    not written for): ``dcmread`` on the file, its reads watched for one cut short, then the
    same checks."""
    fh.seek(0)
    watch = _ShortReadWatch(fh)
    ds = dcmread(watch, stop_before_pixels=headers_only, force=force)
    if force and not ds.file_meta and "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise InvalidDicomError("no SOP class or instance after a forced read")
    if watch.partial:
        raise EOFError("file ends inside an element")
    if len(ds) == 0:
        raise EOFError("no data set after the file meta")
    return _last_checks(ds, fh if headers_only else None, size, fast=False)


def _last_checks(ds: FileDataset, pixels_at: BinaryIO | None, size: int, *,
                 fast: bool = True) -> FileDataset:
    """What every read checks once parsed: the file meta's raw lengths (which also converts
    its value-less elements), the pixel element's length (``pixels_at``: positioned where a
    headers-only read stopped; None when nothing is left to check there) and what converting
    the elements may still reveal, nested items above all."""
    _check_raw_lengths(ds.file_meta)
    if pixels_at is not None:
        _check_pixel_element(pixels_at, ds, size)
    _check_elements(ds, fast)
    _trust_the_bytes(ds)
    return ds


def _trust_the_bytes(ds: FileDataset) -> None:
    """Make ``ds.original_encoding`` say how the data set was actually read.

    pydicom reads a data set whose first element contradicts the transfer syntax (a meta
    saying JPEG Baseline, so Explicit VR, over an Implicit VR data set) in the encoding the
    bytes have, but reports the transfer syntax's. Writing would then copy implicit VR
    elements into an explicit VR file. Raw elements tell: implicit VR ones have no VR.
    """
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    for tag, elem in compat.elements(ds).items():
        if type(elem) is RawDataElement:
            if tag >> 16 == 0x0002:
                continue  # file meta elements misplaced in the data set: always explicit
            read_implicit = elem.VR is None
            if read_implicit != implicit:
                ds.set_original_encoding(read_implicit, little, ds.original_character_set)
                log.debug("the data set is %s VR, unlike its transfer syntax",
                          "implicit" if read_implicit else "explicit")
            return


_MEDIA_INDEX_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: the SOP Class of a DICOMDIR."""
_DIRECTORY_RECORDS = 0x00041220
_FILE_SET_ID = 0x00041130


def is_media_index(ds: Dataset) -> bool:
    """Whether ``ds`` is a DICOMDIR: its file meta names the Media Storage Directory class,
    or it holds the directory's own elements (a DICOMDIR whose meta was lost)."""
    elements = compat.elements(ds)
    if _DIRECTORY_RECORDS in elements or _FILE_SET_ID in elements:
        return True
    meta = ds.__dict__.get("file_meta")
    elem = compat.elements(meta).get(0x00020002) if isinstance(meta, Dataset) else None
    if elem is None:
        return False
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip(" \0") == _MEDIA_INDEX_CLASS


class _NotDicom(Exception):
    """The first bytes are neither a preamble + "DICM" nor a plausible data set."""


def read_dataset(
    path: str | os.PathLike[str], *, headers_only: bool, name: str | None = None,
    root: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> FileDataset:
    """Read ``path``; ``headers_only`` stops before PixelData (the get and inspect stages).

    Raises :class:`InputError` with ``name`` (default: ``path`` as given, so a caller that
    passes a path relative to ``--input`` gets relative paths in reports) and a reason from
    :data:`REASONS`. A preamble-less file is read with ``force=True`` only when it starts like
    DICOM (see :func:`_looks_like_dicom_without_preamble`).

    The file is opened without following a symbolic link (``O_NOFOLLOW``: a link is refused,
    wherever it points) and, with ``root`` (the input folder), the opened file must lie under
    ``root``'s real path, so a folder swapped for a link after the walk reads nothing outside.
    Its size is judged before anything is read: over ``max_bytes``, or sparse (see
    :data:`SPARSE_RATIO`), it is refused, so what a read allocates is bounded by data on disk.

    A small file is read in one call and parsed from memory; pydicom's reads are never
    watched one by one: see :func:`_sequential_end` for how a file cut inside an element
    header is still told apart, and :data:`_WHOLE_MAX` for big files.
    """
    shown = name if name is not None else os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not block the worker; it is refused just below.
        fh = open(path, "rb", opener=open_no_follow)
    except FileNotFoundError:
        raise InputError(shown, MISSING) from None
    except PermissionError:
        raise InputError(shown, PERMISSION) from None
    except IsADirectoryError:
        raise InputError(shown, NOT_REGULAR) from None
    except OSError as exc:
        if exc.errno in LINK_ERRNOS:
            raise InputError(shown, LINK) from None
        raise
    with fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError(shown, NOT_REGULAR)
        if st.st_size == 0:
            raise InputError(shown, EMPTY)
        if root is not None and not beneath(fh.fileno(), root):
            raise InputError(shown, OUTSIDE)
        if st.st_size > max_bytes:
            raise InputError(shown, TOO_LARGE)
        if st.st_size > SPARSE_MIN and 0 < st.st_blocks * 512 < st.st_size // SPARSE_RATIO:
            raise InputError(shown, SPARSE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = _parse_or_raise(fh, st.st_size, headers_only, caught, shown)
    if caught:
        # pydicom's warnings may quote values: DEBUG only, and counted, not printed, above it.
        log.debug("%s: %d pydicom warning(s) while reading", shown, len(caught))
    if not isinstance(ds, FileDataset):  # pragma: no cover - dcmread on a file gives one
        raise InputError(shown, NOT_DICOM)
    if is_media_index(ds):
        raise InputError(shown, MEDIA_INDEX)
    # Parsed from memory: keep the attributes a dataset read from the file has (its name and
    # mtime), and drop the buffer, which would only make the dataset impossible to deep-copy
    # (deidentify works on a copy).
    ds.filename = os.fspath(path)
    ds.timestamp = st.st_mtime
    ds.fileobj_type = open
    ds.buffer = None
    return ds


def _parse_or_raise(fh: BinaryIO, size: int, headers_only: bool,
                    caught: list[warnings.WarningMessage], shown: str) -> FileDataset:
    """:func:`_parse`, every failure that is the file's fault turned into an InputError."""
    try:
        return _parse(fh, size, headers_only, caught)
    except _NotDicom:
        raise InputError(shown, NOT_DICOM) from None
    except InvalidDicomError:
        raise InputError(shown, NOT_DICOM) from None
    except OSError as exc:
        # An I/O failure (EIO, a stale NFS handle) says nothing about the file: let it
        # reach the task so Celery retries it instead of reporting a corrupt file.
        # pydicom raises errno-less OSErrors of its own ("No tag to read") on damaged
        # bytes: those are the file's fault.
        if exc.errno is not None:
            raise
        log.debug("%s: %s while parsing", shown, type(exc).__name__)
        raise InputError(shown, CORRUPT) from None
    except Exception as exc:
        # Any failure inside pydicom on these bytes means the file is damaged (its
        # own errors: EOFError, ValueError, BytesLengthException, struct.error...).
        # Their messages may quote bytes from the file, so only the type is logged.
        log.debug("%s: %s while parsing", shown, type(exc).__name__)
        raise InputError(shown, CORRUPT) from None
