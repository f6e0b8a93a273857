"""Blank the pixel regions an inspect verdict gives (deid's DicomCleaner.clean, spec Part B §5).

One 2-D mask (rows x columns, 1 = keep) is built from every coordinate of every result, in
order, so a later ``keepcoordinates`` box restores what an earlier ``coordinates`` box scrubbed
(deid's ultrasound recipe blanks ``all`` and keeps the ultrasound regions). The mask is then
applied to every frame and every sample of the image, whatever its layout.

Differences from deid, chosen for safety and valid output:

- boxes are clipped to the image; deid's negative numbers wrap around (numpy slicing);
- the cleaned copy is written uncompressed (Explicit VR Little Endian when the source was
  compressed) in the source's planar configuration, and BurnedInAnnotation is set to "NO";
- a box in YBR pixel data is black (Y zero, Cb and Cr mid-scale), not zero in every sample
  (which shows green);
- the input dataset is never changed: a new one is returned;
- the image's decoded size is checked against a limit, and native pixel data against the size
  its header declares, before anything is allocated (:func:`check_pixels`): a few hundred bytes
  of file declaring 65535 x 65535 pixels must not make a worker allocate 4 GiB.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_expected_length, pack_bits
from pydicom.uid import ExplicitVRBigEndian

from ..config import DEFAULT_MAX_PIXEL_BYTES

__all__ = ["clean_pixels", "regions", "has_boxes", "check_pixels", "decoded_size", "PixelLimitError"]


class PixelLimitError(ValueError):
    """The image cannot be decoded within the limits: too big, or its pixel data shorter than
    its header says. The message gives sizes only, never a header value."""


_PIXEL_KEYWORDS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")


def decoded_size(ds: Dataset) -> int:
    """Bytes the decoded pixels take: rows x columns x frames x samples x bytes per sample
    (one for BitsAllocated 1, which decodes to a byte per pixel). Raises PixelLimitError when
    the header does not describe an image."""
    numbers = []
    for keyword in _PIXEL_KEYWORDS:
        try:
            value = int(ds.get(keyword, 1 if keyword == "SamplesPerPixel" else 0) or 0)
        except (TypeError, ValueError):
            value = 0
        if value < 1:
            raise PixelLimitError(f"{keyword} is missing or not a positive number")
        numbers.append(value)
    rows, cols, samples, bits = numbers
    try:
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        raise PixelLimitError("NumberOfFrames is not a number") from None
    return rows * cols * frames * samples * max(1, (bits + 7) // 8)


def check_pixels(ds: Dataset, max_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> int:
    """Check, from the header alone, that decoding ``ds``'s pixels is safe; returns their
    decoded size. Raises PixelLimitError when it is over ``max_bytes``
    (``DEID_MAX_PIXEL_BYTES``), or when native (uncompressed) pixel data is shorter than the
    image its header describes (a decoder would fail on it, or trust the header).

    Costs a few element reads; nothing is decoded or allocated.
    """
    size = decoded_size(ds)
    if size > max_bytes:
        raise PixelLimitError(f"the image decodes to {size} bytes, over DEID_MAX_PIXEL_BYTES "
                              f"({max_bytes}); raise it on workers with the memory for it")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    pixel_data = ds.get("PixelData")
    if syntax is not None and not syntax.is_compressed and isinstance(pixel_data, bytes):
        try:
            expected = int(get_expected_length(ds, unit="bytes"))
        except (AttributeError, TypeError, ValueError, KeyError):
            raise PixelLimitError("the header does not describe the pixel data") from None
        if len(pixel_data) < expected:
            raise PixelLimitError(f"pixel data of {len(pixel_data)} bytes is shorter than the "
                                  f"{expected} bytes its header describes")
    return size

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


def clean_pixels(ds: Dataset, verdict: Mapping[str, Any], *,
                 max_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> Dataset:
    """A copy of ``ds`` whose pixels inside the verdict's scrub boxes are zero.

    Works for grey and multi-sample (RGB, YBR) images, single- or multi-frame, either planar
    configuration. A compressed source is decoded with pydicom's installed handlers and the
    copy is written as Explicit VR Little Endian. BurnedInAnnotation becomes "NO" when the
    verdict has boxes; with none, the pixels are unchanged and so is that element (nothing
    was scrubbed, so we cannot claim it). Raises ValueError if the dataset has no pixel data
    or a box is malformed, and :class:`PixelLimitError` (a ValueError) before any allocation,
    the mask's included, when :func:`check_pixels` refuses the image.
    """
    if "PixelData" not in ds:
        raise ValueError("dataset has no PixelData (was it read with stop_before_pixels?)")
    check_pixels(ds, max_bytes)
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
    if samples == 3 and str(out.get("PhotometricInterpretation", "")).startswith("YBR"):
        # Zero is black in Y only: a blacked-out box has no chroma (Cb = Cr = mid-scale),
        # else a viewer shows it saturated green.
        mid = 1 << (int(out.get("BitsStored", out.BitsAllocated)) - 1)
        cleaned[..., 1:] += ((1 - keep) * mid).astype(arr.dtype)

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
