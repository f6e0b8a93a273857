"""Retired high-bit overlays made standard: their bits moved out of the pixel data into
``(60xx,3000) OverlayData``, so a recipe's decision about Overlay Data applies to them too.

Why: an overlay is a one-bit picture a viewer draws over the image (PS3.3 C.9.2), and names
and IDs are often drawn there. Older files (and some ultrasound and CR devices) keep it not in
its own OverlayData but in an unused high bit of native pixel data: ``(60xx,0102)
OverlayBitPosition`` at or above BitsStored (and above HighBit), no OverlayData. That form is
retired, and a recipe cannot act on it: the Basic profile removes Overlay Data (X in PS3.15
E.1-1), but here there is no such element, so the bits would stay in PixelData and the 60xx
group would still tell a viewer to draw them. :func:`standardize_high_bit_overlays` rewrites
such an overlay in the standard form before the recipe runs; the recipe then removes or
keeps its OverlayData like any other.

Invariants of :func:`standardize_high_bit_overlays`:

- the pixel values do not change: only the overlay's own bit is cleared in every stored word,
  never a bit within BitsStored or at or below HighBit;
- the new OverlayData holds the same bits as the high-bit plane, packed one bit per pixel,
  frame after frame, little-endian bit order within bytes (PS3.5 8.1.2, as pydicom's
  ``pack_bits`` writes them), padded to an even length; ``OverlayBitsAllocated`` 1 and
  ``OverlayBitPosition`` 0; for multi-frame pixel data ``NumberOfFramesInOverlay`` and
  ``ImageFrameOrigin`` say which frames it covers (those the input declared, else all);
- only native (uncompressed) pixel data with one sample per pixel and 8, 16 or 32 bits
  allocated is touched: high-bit overlays are defined for native data only, so encapsulated
  (compressed) pixel data has nothing to move and is left as it is;
- an overlay whose declared rows and columns are not the image's is left as it is (no viewer
  can draw it; ``--verify`` reports its bits if they reach an output);
- a dataset without any ``(60xx,0102)`` element costs sixteen dict lookups and is not changed.

The helpers :func:`native_words`, :func:`store_words` and :func:`high_bit_position` are shared
with the OCR stage (:mod:`deid_workers.ocr.overlays`), which reads and clears these bits too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from . import compat

if TYPE_CHECKING:
    import numpy as np

__all__ = ["OVERLAY_GROUPS", "has_bit_positions", "high_bit_position", "high_bit_overlays",
           "native_words", "store_words", "standardize_high_bit_overlays"]

OVERLAY_GROUPS = tuple(range(0x6000, 0x6020, 2))
"""The overlay groups, 6000-601E even (PS3.5 7.6: repeating groups)."""

_ROWS, _COLS, _FRAMES, _ORIGIN, _BITS_ALLOC, _BITPOS, _FRAME_ORIGIN, _DATA = (
    0x0010, 0x0011, 0x0015, 0x0050, 0x0100, 0x0102, 0x0051, 0x3000)
_BITPOS_TAGS = tuple((g << 16) | _BITPOS for g in OVERLAY_GROUPS)
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF


def _get(ds: Dataset, group: int, elem: int) -> Any:
    found = compat.elements(ds).get((group << 16) | elem)  # type: ignore[call-overload]
    return None if found is None else ds[(group << 16) | elem].value


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def has_bit_positions(ds: Dataset) -> bool:
    """Whether ``ds`` has any ``(60xx,0102) OverlayBitPosition``: the cheap first test
    (sixteen dict lookups) before anything about overlays is worth reading."""
    elements = compat.elements(ds)
    return any(tag in elements for tag in _BITPOS_TAGS)


def high_bit_position(ds: Dataset, group: int) -> int | None:
    """The pixel-data bit holding overlay ``group``, or None when it is no high-bit overlay
    (it has its own OverlayData, or its bit position is not an unused bit of the pixel
    words: within BitsStored, at or below HighBit, or beyond BitsAllocated)."""
    if _get(ds, group, _DATA) is not None:
        return None
    pos = _int(_get(ds, group, _BITPOS))
    if pos is None:
        return None
    bits_alloc = _int(ds.get("BitsAllocated"), 0) or 0
    bits_stored = _int(ds.get("BitsStored"), bits_alloc) or bits_alloc
    high_bit = _int(ds.get("HighBit"), bits_stored - 1) or 0
    if bits_alloc <= 1 or not max(bits_stored, high_bit + 1) <= pos < bits_alloc:
        return None
    return pos


def high_bit_overlays(ds: Dataset) -> dict[int, int]:
    """Every high-bit overlay ``ds``'s header declares: group -> pixel-data bit. Headers are
    enough (the pixel data is not read); empty after sixteen dict lookups for most files."""
    if not has_bit_positions(ds):
        return {}
    found = {g: high_bit_position(ds, g) for g in OVERLAY_GROUPS}
    return {g: pos for g, pos in found.items() if pos is not None}


def _encapsulated(ds: Dataset) -> bool:
    elem = compat.elements(ds).get(_PIXEL_DATA)  # type: ignore[call-overload]
    if isinstance(elem, RawDataElement):
        return bool(elem.length == _UNDEFINED)
    return bool(getattr(elem, "is_undefined_length", False))


def _little_endian(ds: Dataset) -> bool:
    """The byte order the pixel data was read in: the data set's own encoding, else its
    meta's transfer syntax (a data set built in memory), else little endian."""
    little = ds.original_encoding[1]
    if little is not None:
        return bool(little)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and UID(syntax).is_transfer_syntax:
        return bool(UID(syntax).is_little_endian)
    return True


def native_words(ds: Dataset) -> np.ndarray | None:
    """The stored words of native, single-sample pixel data (frames x rows x cols, read-only
    view in the order they were read), or None: no PixelData, encapsulated or compressed,
    several samples per pixel, BitsAllocated not 8, 16 or 32, or fewer bytes than declared."""
    if _PIXEL_DATA not in compat.elements(ds) or _encapsulated(ds):
        return None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and UID(syntax).is_transfer_syntax and UID(syntax).is_compressed:
        return None
    if (_int(ds.get("SamplesPerPixel", 1), 0) or 1) != 1:
        return None
    bits = _int(ds.get("BitsAllocated"), 0)
    if bits not in (8, 16, 32):
        return None
    rows, cols = _int(ds.get("Rows"), 0) or 0, _int(ds.get("Columns"), 0) or 0
    frames = max(1, _int(ds.get("NumberOfFrames", 1), 1) or 1)
    data = ds.PixelData
    if rows < 1 or cols < 1 or not isinstance(data, (bytes, bytearray)):
        return None
    import numpy as np

    dtype = np.dtype(f"{'<' if _little_endian(ds) else '>'}u{bits // 8}")
    need = rows * cols * frames
    if len(data) < need * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype=dtype, count=need).reshape(frames, rows, cols)


def store_words(ds: Dataset, words: np.ndarray) -> None:
    """Put ``words`` (as :func:`native_words` gave them, edited) back into PixelData, in
    place: in the byte order the data set was read in (numpy's arithmetic may have handed
    back native order), any bytes after them (an odd length's padding) kept, the element's
    VR kept."""
    data = ds.PixelData
    dtype = words.dtype.newbyteorder("<" if _little_endian(ds) else ">")
    head = words.astype(dtype, copy=False).tobytes()
    ds.PixelData = head + bytes(data[len(head):])


def _frames_of(ds: Dataset, group: int, frames: int) -> tuple[int, int]:
    """The frames (first, count; 0-based) overlay ``group`` covers in ``frames`` image frames:
    ``ImageFrameOrigin`` and ``NumberOfFramesInOverlay`` where declared, clipped, else all."""
    first = (_int(_get(ds, group, _FRAME_ORIGIN), 1) or 1) - 1
    first = min(max(first, 0), frames - 1)
    count = _int(_get(ds, group, _FRAMES), frames) or frames
    return first, max(1, min(count, frames - first))


def standardize_high_bit_overlays(ds: Dataset) -> tuple[int, ...]:
    """Move every high-bit overlay of ``ds`` into its own OverlayData, in place (see the
    module docstring for what changes and what never does). Returns the groups moved."""
    groups = high_bit_overlays(ds)
    if not groups:
        return ()
    words = native_words(ds)
    if words is None:
        return ()
    from pydicom.pixels.utils import pack_bits

    frames, rows, cols = words.shape
    out = words.copy()
    little = _little_endian(ds)
    moved = []
    for group, pos in groups.items():
        if (_int(_get(ds, group, _ROWS)), _int(_get(ds, group, _COLS))) != (rows, cols):
            continue
        first, count = _frames_of(ds, group, frames)
        plane = ((words[first:first + count] >> pos) & 1).astype("u1")
        out &= out.dtype.type(~(1 << pos) & ((1 << (8 * out.dtype.itemsize)) - 1))
        base = group << 16
        ds[base | _BITS_ALLOC] = DataElement(base | _BITS_ALLOC, "US", 1)
        ds[base | _BITPOS] = DataElement(base | _BITPOS, "US", 0)
        if frames > 1:
            ds[base | _FRAMES] = DataElement(base | _FRAMES, "IS", count)
            ds[base | _FRAME_ORIGIN] = DataElement(base | _FRAME_ORIGIN, "US", first + 1)
        # OB where bytes are swapped per word (big endian): bits stay in the order packed.
        ds[base | _DATA] = DataElement(base | _DATA, "OW" if little else "OB",
                                       pack_bits(plane.ravel()))
        moved.append(group)
    if moved:
        store_words(ds, out)
    return tuple(moved)
