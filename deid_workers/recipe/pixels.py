"""Blank the pixel regions an inspect verdict gives (deid's DicomCleaner.clean, spec Part B §5).

One 2-D mask (rows x columns, 1 = keep) is built from every coordinate of every result, in
order, so a later ``keepcoordinates`` box restores what an earlier ``coordinates`` box scrubbed
(deid's ultrasound recipe blanks ``all`` and keeps the ultrasound regions). The mask is then
applied to every frame and every sample of the image, whatever its layout.

Differences from deid, chosen for safety and valid output:

- boxes are clipped to the image; deid's negative numbers wrap around (numpy slicing);
- the cleaned copy is written uncompressed (Explicit VR Little Endian when the source was
  compressed) in the source's planar configuration, and BurnedInAnnotation is set to "NO";
- the input dataset is never changed: a new one is returned.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits
from pydicom.uid import ExplicitVRBigEndian

__all__ = ["clean_pixels", "regions", "has_boxes"]

_SCRUB, _KEEP = 0, 1


def _boxes(verdict: Mapping[str, Any]) -> Iterable[tuple[int, Any, str]]:
    """(mask value, spec, where) for every coordinate of every result, in order."""
    for r_no, result in enumerate(verdict.get("results") or (), start=1):
        for c_no, entry in enumerate(result.get("coordinates") or (), start=1):
            where = f"result {r_no} ({result.get('group', '?')}), coordinates {c_no}"
            try:
                value, spec = entry
            except (TypeError, ValueError):
                raise ValueError(f"{where}: expected [mask, box]") from None
            if value not in (_SCRUB, _KEEP):
                raise ValueError(f"{where}: mask must be 0 (scrub) or 1 (keep)")
            specs = spec if isinstance(spec, (list, tuple)) else [spec]
            for s in specs:
                yield value, s, where


def has_boxes(verdict: Mapping[str, Any]) -> bool:
    """True if the verdict names at least one box (so cleaning can change pixels)."""
    return any(True for _ in _boxes(verdict))


def _box(spec: Any, rows: int, cols: int, where: str) -> tuple[int, int, int, int]:
    """``"x0,y0,x1,y1"`` (x1, y1 exclusive, as deid slices) or ``"all"`` -> clipped box."""
    if not isinstance(spec, str):
        raise ValueError(f"{where}: a box must be text 'x0,y0,x1,y1' or 'all'")
    if spec.strip().lower() == "all":
        return 0, 0, cols, rows
    try:
        numbers = [int(p) for p in spec.split(",")]
    except ValueError:
        raise ValueError(f"{where}: a box must be four integers 'x0,y0,x1,y1' or 'all'") from None
    if len(numbers) != 4:
        raise ValueError(f"{where}: a box needs four integers x0,y0,x1,y1, found {len(numbers)}")
    x0, y0, x1, y1 = numbers
    return (
        min(max(x0, 0), cols),
        min(max(y0, 0), rows),
        min(max(x1, 0), cols),
        min(max(y1, 0), rows),
    )


def regions(verdict: Mapping[str, Any], rows: int, cols: int) -> np.ndarray:
    """The keep mask (uint8, rows x cols, 1 = keep) of an inspect verdict.

    Boxes apply in order and later ones win, so ``keepcoordinates`` after ``coordinates``
    restores pixels. Raises ValueError for a malformed box (the message names its position,
    never its text, which may come from the header).
    """
    mask = np.ones((rows, cols), dtype=np.uint8)
    for value, spec, where in _boxes(verdict):
        x0, y0, x1, y1 = _box(spec, rows, cols, where)
        mask[y0:y1, x0:x1] = value
    return mask


def clean_pixels(ds: Dataset, verdict: Mapping[str, Any]) -> Dataset:
    """A copy of ``ds`` whose pixels inside the verdict's scrub boxes are zero.

    Works for grey and multi-sample (RGB, YBR) images, single- or multi-frame, either planar
    configuration. A compressed source is decoded with pydicom's installed handlers and the
    copy is written as Explicit VR Little Endian. BurnedInAnnotation becomes "NO" when the
    verdict has boxes; with none, the pixels are unchanged and so is that element (nothing
    was scrubbed, so we cannot claim it). Raises ValueError if the dataset has no pixel data
    or a box is malformed.
    """
    if "PixelData" not in ds:
        raise ValueError("dataset has no PixelData (was it read with stop_before_pixels?)")
    rows, cols = int(ds.Rows), int(ds.Columns)
    mask = regions(verdict, rows, cols)  # validate before the (costly) copy and decode
    out = copy.deepcopy(ds)
    if not has_boxes(verdict):
        return out

    syntax = getattr(getattr(out, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        raise ValueError("dataset has no file meta TransferSyntaxUID: its pixels cannot be decoded")
    if syntax.is_compressed:
        # pydicom decodes, converts YBR to RGB, and sets an uncompressed transfer syntax,
        # the photometric interpretation and planar configuration to match.
        out.decompress(generate_instance_uid=False)
        syntax = out.file_meta.TransferSyntaxUID
    big_endian = syntax == ExplicitVRBigEndian

    # Native data keeps its colour space: no YBR -> RGB conversion on the way through.
    out.pixel_array_options(as_rgb=False)
    arr = out.pixel_array
    samples = int(out.get("SamplesPerPixel", 1) or 1)
    keep = mask[:, :, np.newaxis] if samples > 1 else mask
    cleaned = arr * keep.astype(arr.dtype)

    layout = cleaned
    if samples > 1 and int(out.get("PlanarConfiguration", 0) or 0) == 1:
        layout = np.moveaxis(cleaned, -1, -3)  # (..., rows, cols, s) -> (..., s, rows, cols)
    bits = int(out.BitsAllocated)
    if bits == 1:
        data = pack_bits(layout)
    else:
        if layout.dtype.itemsize * 8 != bits:
            raise ValueError(
                f"decoded pixels are {layout.dtype.itemsize * 8}-bit but BitsAllocated is {bits}"
            )
        order = ">" if big_endian else "<"
        data = layout.astype(layout.dtype.newbyteorder(order), copy=False).tobytes()
    if len(data) % 2:
        data += b"\0"
    out.PixelData = data
    if out.get("PhotometricInterpretation") == "YBR_FULL_422":
        # pydicom hands native 4:2:2 data back at full resolution; store it as such.
        out.PhotometricInterpretation = "YBR_FULL"
    out.BurnedInAnnotation = "NO"
    return out
