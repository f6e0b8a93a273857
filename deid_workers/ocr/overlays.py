"""Overlay planes of the 60xx groups, as bit images, and clearing a box in one of them.

An overlay is a one-bit picture a viewer draws over the image (PS3.3 C.9.2): text is often put
there, not in the pixels. It is stored in one of two ways, and both are read:

- ``(60xx,3000) OverlayData``: its own bits, ``(60xx,0015)`` frames packed one after another,
  little-endian bit order within bytes (as pydicom's ``unpack_bits`` reads them);
- retired, still found in older files: in an unused high bit of the pixel data
  (``(60xx,0102) OverlayBitPosition`` at or above BitsStored, no OverlayData). pydicom masks
  those bits away when it decodes, so they are read here from the raw PixelData; that is done
  for native (uncompressed) pixel data only, the only place such overlays are defined. The
  DICOM side of this form (which bit, the stored words) is :mod:`deid_workers.dicom.overlays`,
  which put also uses to move such an overlay into OverlayData before the recipe runs; the
  ocr stage reads the input, so it still meets the high-bit form.

Coordinates of a plane are its own (``OverlayRows`` x ``OverlayColumns``); ``origin`` gives
where its top-left pixel falls in the image (``(60xx,0050)`` is 1-based).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits, unpack_bits
from pydicom.tag import Tag

from ..dicom.overlays import OVERLAY_GROUPS, high_bit_position, native_words, store_words

__all__ = ["OverlayPlane", "overlay_groups", "overlay_planes", "clear_overlay_box", "clear_unused_high_bits",
           "high_bit_position"]

_ROWS, _COLS, _FRAMES, _ORIGIN, _BITPOS, _DATA = 0x0010, 0x0011, 0x0015, 0x0050, 0x0102, 0x3000


@dataclass(frozen=True)
class OverlayPlane:
    """One frame of one overlay: ``bits`` (bool, rows x cols) placed at ``origin`` (row, col)."""

    group: int
    index: int
    bits: np.ndarray
    origin: tuple[int, int]

    @property
    def source(self) -> str:
        return f"overlay {self.group:04X}"


def _tag(group: int, elem: int) -> int:
    return int(Tag((group << 16) | elem))


def _get(ds: Dataset, group: int, elem: int) -> Any:
    el = ds.get(_tag(group, elem))
    return None if el is None else el.value


def overlay_groups(ds: Dataset) -> list[int]:
    """The overlay groups (0x6000-0x601E, even) that have rows and columns."""
    out = []
    for group in OVERLAY_GROUPS:
        if _get(ds, group, _ROWS) is not None and _get(ds, group, _COLS) is not None:
            out.append(group)
    return out


def _origin(ds: Dataset, group: int) -> tuple[int, int]:
    value = _get(ds, group, _ORIGIN)
    try:
        r, c = (int(v) for v in value)
    except (TypeError, ValueError):
        return 0, 0
    return r - 1, c - 1


def _shape(ds: Dataset, group: int) -> tuple[int, int, int]:
    rows = int(_get(ds, group, _ROWS))
    cols = int(_get(ds, group, _COLS))
    frames = _get(ds, group, _FRAMES)
    return rows, cols, max(1, int(frames or 1))


def overlay_planes(ds: Dataset, *, max_frames: int = 16) -> Iterator[OverlayPlane]:
    """Every overlay frame worth reading (sampled like pixel frames), as bit images.

    An overlay whose bits cannot be found (declared size larger than its data, high bit in
    compressed pixel data) is skipped: there is nothing there a viewer could draw either.
    """
    from .frames import frame_indices  # frames imports us for the pixel side

    for group in overlay_groups(ds):
        try:
            rows, cols, frames = _shape(ds, group)
        except (TypeError, ValueError):
            continue
        if rows < 1 or cols < 1:
            continue
        origin = _origin(ds, group)
        pos = high_bit_position(ds, group)
        if pos is not None:
            raw = native_words(ds)
            if raw is None or raw.shape[1:] != (rows, cols):
                continue
            for i in frame_indices(raw.shape[0], max_frames):
                yield OverlayPlane(group, i, ((raw[i] >> pos) & 1).astype(bool), origin)
            continue
        data = _get(ds, group, _DATA)
        if not isinstance(data, (bytes, bytearray)):
            continue
        bits = np.asarray(unpack_bits(bytes(data), as_array=True))
        per = rows * cols
        frames = min(frames, bits.size // per)
        for i in frame_indices(frames, max_frames) if frames else []:
            yield OverlayPlane(group, i, bits[i * per:(i + 1) * per].reshape(rows, cols).astype(bool), origin)


def clear_overlay_box(ds: Dataset, group: int, box: tuple[int, int, int, int]) -> bool:
    """Clear overlay ``group``'s bits inside ``box`` (x0, y0, x1, y1 in overlay coordinates,
    exclusive ends) on every one of its frames, in place. True if the overlay was found.

    Works on OverlayData and on native high-bit overlays; for the latter the box is in image
    coordinates too (the plane has the image's size) and only that bit is cleared.
    """
    try:
        rows, cols, frames = _shape(ds, group)
    except (TypeError, ValueError):
        return False
    x0, y0, x1, y1 = (max(0, v) for v in box)
    x1, y1 = min(x1, cols), min(y1, rows)
    if x1 <= x0 or y1 <= y0:
        return True
    pos = high_bit_position(ds, group)
    if pos is not None:
        raw = native_words(ds)
        if raw is None:
            return False
        words = raw.copy()
        words[:, y0:y1, x0:x1] &= words.dtype.type(~(1 << pos) & (2 ** (8 * words.dtype.itemsize) - 1))
        store_words(ds, words)
        return True
    current = _get(ds, group, _DATA)
    if not isinstance(current, (bytes, bytearray)):
        return False
    bits = np.array(unpack_bits(bytes(current), as_array=True))
    per = rows * cols
    for i in range(min(frames, bits.size // per)):
        plane = bits[i * per:(i + 1) * per].reshape(rows, cols)
        plane[y0:y1, x0:x1] = 0
    packed = pack_bits(bits)
    ds[_tag(group, _DATA)].value = packed + (b"\0" if len(packed) % 2 else b"")
    return True


def clear_unused_high_bits(ds: Dataset) -> bool:
    """Zero the bits above BitsStored in native pixel data, in place; True if any was set.

    For an overlay that was read from the high bits but whose 60xx elements are gone by the
    time of redaction (a recipe removed them): its bits could still be shown by a viewer that
    guesses, so all unused high bits go.
    """
    raw = native_words(ds)
    if raw is None:
        return False
    stored = int(ds.get("BitsStored", 0) or 0)
    bits = raw.dtype.itemsize * 8
    if not 0 < stored < bits:
        return False
    keep = raw.dtype.type((1 << stored) - 1)
    if not (raw & ~keep).any():
        return False
    store_words(ds, raw & keep)
    return True
